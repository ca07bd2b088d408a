"""Hard time budgets, the rules: how long a trial may take by default and when training under a budget stops.
Kept free of torch and Lightning so `stw sweep --help` can state them; the callback is in budget_stop.py."""

# Training stops this long before a budget runs out, so that validating and testing the best checkpoint, logging
# the run's figures and (for the sweep) the report fit inside the budget rather than after it: 5% of the budget,
# at least 20 s (closing a trial and reporting took 10-20 s on a busy 2-core machine), at most a quarter of it.
CLOSING_SHARE = 0.05
CLOSING_FLOOR_S = 20.0
CLOSING_CAP_SHARE = 0.25
# The default --trial-timeout: this many times a trial's fair share of the sweep (timeout x workers / trials),
# so a slow family still finishes a few epochs but no trial can take the whole sweep, and never under the floor.
TRIAL_SHARE = 3.0
TRIAL_FLOOR_S = 30.0

SWEEP_CUT = "sweep_timeout"
TRIAL_CUT = "trial_timeout"


def default_trial_timeout(timeout: float | None, workers: int, trials: int) -> float | None:
    if timeout is None:
        return None
    return max(TRIAL_FLOOR_S, TRIAL_SHARE * timeout * workers / trials)


def closing_reserve(budget: float) -> float:
    return min(max(CLOSING_SHARE * budget, CLOSING_FLOOR_S), CLOSING_CAP_SHARE * budget)


def stop_time(start: float, budget: float) -> float:
    """When training under `budget` seconds from `start` (time.time()) must stop."""
    return start + budget - closing_reserve(budget)
