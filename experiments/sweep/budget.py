"""Hard time budgets, the rules: how long a trial may take by default and when training under a budget stops.
Kept free of torch and Lightning so `stw sweep --help` can state them; the callback is in budget_stop.py."""

import math
from collections.abc import Sequence

# Training stops this long before a budget runs out, so that validating and testing the best checkpoint, logging
# the run's figures and (for the sweep) the report fit inside the budget rather than after it. Once trials of the
# sweep have closed, the reserve is the slowest closing measured (a cut trial's last validation, its test and its
# logging) with a margin for one that runs slower; before that, a prior: 5% of the budget, at least 20 s (closing
# took 10-20 s on a busy 2-core machine). Never more than a quarter of the budget. A fixed 20 s made a 120 s sweep
# end 11% early where closing took 2-4 s (benchmarks/sweep_budget.py); a margin of 1.5 with a 4 s report still
# made it end 3.4% early (closings 2.9-3.6 s, report 2.5 s).
CLOSING_MARGIN = 1.25
CLOSING_SHARE = 0.05
CLOSING_FLOOR_S = 20.0
CLOSING_CAP_SHARE = 0.25
# After its last trial the sweep writes its report and closes its parent run (a few seconds, measured by
# benchmarks/sweep_budget.py: 2.5 s); the sweep's reserve holds this too.
REPORT_S = 3.0
# The default --trial-timeout: this many times a trial's fair share of the sweep (timeout x workers / trials),
# so a slow family still finishes a few epochs but no trial can take the whole sweep, and never under the floor.
TRIAL_SHARE = 3.0
TRIAL_FLOOR_S = 30.0
# A sweep bounded by --timeout alone (no --trials) counts as this many trials for that share: one trial may then
# take a quarter of the sweep per worker.
TIMED_SWEEP_TRIALS = 12
# --trials without --timeout; with --timeout alone the sweep runs trials until the budget ends.
DEFAULT_TRIALS = 6
# --max-failures of a sweep bounded by time alone (with --trials: the larger of 3 and --trials).
TIMED_SWEEP_MAX_FAILURES = 10

CLOSING_ATTR = "closing_s"  # the trial's user attribute holding its measured closing seconds
SWEEP_CUT = "sweep_timeout"
TRIAL_CUT = "trial_timeout"


def default_trials(trials: int | None, timeout: float | None) -> float:
    """The study's target of finished trials: --trials if given, else unbounded (math.inf) under --timeout."""
    if trials is not None:
        return trials
    return math.inf if timeout is not None else DEFAULT_TRIALS


def default_trial_timeout(timeout: float | None, workers: int, trials: float) -> float | None:
    if timeout is None:
        return None
    counted = TIMED_SWEEP_TRIALS if math.isinf(trials) else trials
    return max(TRIAL_FLOOR_S, TRIAL_SHARE * timeout * workers / counted)


def closing_reserve(budget: float, closings: Sequence[float] = (), tail: float = 0.0) -> float:
    """Seconds kept back from `budget` for closing: from the measured `closings` (seconds) when there are any, plus
    `tail` for work after the trial (the sweep's report)."""
    if closings:
        reserve = CLOSING_MARGIN * max(closings) + tail
    else:
        reserve = max(CLOSING_SHARE * budget, CLOSING_FLOOR_S)
    return min(reserve, CLOSING_CAP_SHARE * budget)


def stop_time(start: float, budget: float, closings: Sequence[float] = (), tail: float = 0.0) -> float:
    """When training under `budget` seconds from `start` (time.time()) must stop."""
    return start + budget - closing_reserve(budget, closings, tail)
