"""What a run is called in MLflow: a short name that tells runs apart, and a one-line description.

The name is `<family>-<data>[-<tickers>][-L<lookback>H<horizon>]-s<seed>-<hash>`, e.g.
`lstm-stock-spy+qqq-L60H5-s0-3fa9c1`: the hash is of the whole config but its seed, so two runs with different
options never share a name, and the seeds of one config share everything but their `s<n>`. The description (the
`mlflow.note.content` tag the UI shows) says the family, the data, the task and the options that differ from the
defaults.
"""

import functools
import hashlib
import json
from typing import Any

from datamodules.stock import ticker_name
from experiments.config import flatten, run_parser

MAX_NAME = 59  # MLflow's run list cuts longer names; every name stays under 60 characters
MAX_DESCRIPTION = 400
HASH_CHARS = 6
# Options that say how a run is executed or shown, not what it learns: left out of the description.
QUIET_OPTIONS = ("trainer.progress", "data.root", "data.download")


def config_hash(config: dict[str, Any]) -> str:
    """A short digest of everything in the config but the seed."""
    payload = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:HASH_CHARS]


def tickers(data: dict[str, Any]) -> list[str]:
    """The tickers a stock run reads, from its file names when data.paths is given (as the dataset names them)."""
    if data.get("paths"):
        return [ticker_name(path) for path in data["paths"]]
    return [str(t).lower() for t in data.get("tickers") or []]


def shape_word(data: dict[str, Any]) -> str:
    """L<lookback>H<horizon> for windowed series (H alone where only a horizon applies), else nothing."""
    lookback, horizon = data.get("lookback"), data.get("horizon")
    if lookback is None:
        return ""
    return f"L{lookback}H{horizon}" if horizon is not None else f"L{lookback}"


def run_name(config: dict[str, Any], prefix: str = "") -> str:
    """The run's name, after `prefix` (a sweep's `trial-3-`), shortened in the middle to stay under 60 characters."""
    data = config["data"]
    parts = [f"{prefix}{config['model']['family']}", data["name"]]
    if names := tickers(data):
        parts.append("+".join(names) if len(names) <= 3 else f"{'+'.join(names[:2])}+{len(names) - 2}more")
    if shape := shape_word(data):
        parts.append(shape)
    tail = f"-s{config['seed']}-{config_hash(config)}"
    return "-".join(parts)[: MAX_NAME - len(tail)] + tail


@functools.cache
def _defaults(data: str, family: str) -> dict[str, Any]:
    return flatten(run_parser(data, family).get_defaults().as_dict())


def changed_options(config: dict[str, Any]) -> dict[str, Any]:
    """The config values that differ from a fresh `stw train --data X --model Y`: the run's own choices."""
    defaults = _defaults(config["data"]["name"], config["model"]["family"])
    return {
        key: value
        for key, value in flatten(config).items()
        if key not in ("data.name", "model.family", "seed", *QUIET_OPTIONS) and defaults.get(key, object()) != value
    }


def run_description(config: dict[str, Any], task: str) -> str:
    """One line: `lstm on stock (spy+qqq), forecast, lookback 60, horizon 5, seed 0; model.hidden_size=8, ...`."""
    data = config["data"]
    what = [
        f"{config['model']['family']} on {data['name']}" + (f" ({'+'.join(tickers(data))})" if tickers(data) else "")
    ]
    what.append(task)
    if data.get("lookback") is not None:
        what.append(f"lookback {data['lookback']}")
    if data.get("horizon") is not None:
        what.append(f"horizon {data['horizon']}")
    what.append(f"seed {config['seed']}")
    options = ", ".join(f"{key}={value}" for key, value in changed_options(config).items())
    line = ", ".join(what) + (f"; {options}" if options else "; default options")
    return line if len(line) <= MAX_DESCRIPTION else line[: MAX_DESCRIPTION - 3] + "..."
