"""Search spaces as data: load, merge, fix knobs, and turn an Optuna trial into config overrides."""

from copy import deepcopy
from pathlib import Path
from typing import Any

import optuna
import yaml

from datamodules import DATASETS, dataset_class
from datamodules.errors import ConfigError

DEFAULT_SPACE = Path(__file__).parent / "search_space.yaml"
Space = dict[str, Any]


def load_space(path: Path | None = None) -> Space:
    """The default space, with a user file merged over it (or replacing it when the file says `replace: true`)."""
    space = yaml.safe_load(DEFAULT_SPACE.read_text())
    if path is None:
        return space
    user = yaml.safe_load(Path(path).read_text()) or {}
    if user.pop("replace", False):
        return {"shared": {}, "datasets": {}, "families": {}, "recipes": {}, "sweep_families": {}, **user}
    merged = deepcopy(space)
    merged["shared"].update(user.get("shared", {}))
    merged.setdefault("sweep_families", {}).update(user.get("sweep_families", {}))
    for section in ("datasets", "families", "recipes"):
        for name, entries in user.get(section, {}).items():
            merged[section].setdefault(name, {}).update(entries)
    return merged


def section_names(data: str) -> list[str]:
    """The names a dataset's entries in a section of the space may be filed under, most specific first: its own,
    then those of the registered datasets it derives from (ETTh2 and ETTm1 are ETT files: they take `ett`'s
    knobs and recipes), then its task's (`forecast`, `classify`)."""
    cls = dataset_class(data)
    names = {klass: name for name, klass in reversed(DATASETS.items())}  # a class's first registered name
    derived = [names[base] for base in cls.__mro__ if base in names]
    return list(dict.fromkeys([data, *derived, cls.task]))


def dataset_entry(space: Space, section: str, data: str) -> Any:
    """The first entry of `section` (datasets, recipes, sweep_families) filed under one of section_names(data)."""
    entries = space.get(section) or {}
    return next((entries[name] for name in section_names(data) if entries.get(name)), None)


def default_families(space: Space, data: str, task_families: tuple[str, ...]) -> list[str]:
    """The families a sweep of `data` chooses among when --families is not given: the space's `sweep_families`
    entry for it, else its task's."""
    return list(dataset_entry(space, "sweep_families", data) or task_families)


def knobs_for(space: Space, data: str, family: str, fixed: set[str]) -> dict[str, dict[str, Any]]:
    """Config path -> distribution for one trial; knobs the user fixed with key=value are left out.

    Later layers win: shared, the dataset's, the family's, then the dataset's own entry for that family
    (`datasets.sms.families.transformer`), for knobs whose sensible range depends on the data.
    """
    dataset = dict(dataset_entry(space, "datasets", data) or {})
    per_family = dataset.pop("families", {})
    knobs = {
        **space.get("shared", {}),
        **dataset,
        **space.get("families", {}).get(family, {}),
        **per_family.get(family, {}),
    }
    return {path: dist for path, dist in knobs.items() if path not in fixed}


def suggest(trial: optuna.Trial, name: str, dist: dict[str, Any]) -> Any:
    """Ask the trial for one knob. Family knobs get the family in their Optuna name (param_name), so conditional
    parameters of different families never share a name (Optuna requires one distribution per name)."""
    if "choice" in dist:
        return trial.suggest_categorical(name, dist["choice"])
    if "float" in dist:
        low, high = dist["float"]
        return trial.suggest_float(name, low, high, log=dist.get("log", False))
    if "int" in dist:
        low, high = dist["int"]
        return trial.suggest_int(name, low, high, step=dist.get("step", 1), log=dist.get("log", False))
    raise ConfigError(f"search space entry {name!r} needs one of choice/float/int, got {dist}")


def family_paths(space: Space, data: str, family: str) -> set[str]:
    """The config paths that are conditional on `family` (their Optuna names carry the family)."""
    dataset_families = (dataset_entry(space, "datasets", data) or {}).get("families", {})
    return set(space.get("families", {}).get(family, {})) | set(dataset_families.get(family, {}))


def param_name(path: str, family: str, conditional: set[str]) -> str:
    return f"{family}:{path}" if path in conditional else path


def sample_overrides(trial: optuna.Trial, space: Space, data: str, family: str, fixed: set[str]) -> dict[str, Any]:
    """Flat {config path: value} for one trial."""
    conditional = family_paths(space, data, family)
    return {
        path: suggest(trial, param_name(path, family, conditional), dist)
        for path, dist in knobs_for(space, data, family, fixed).items()
    }


def contains(dist: dict[str, Any], value: Any) -> bool:
    """Whether `value` is a point the distribution can draw (a recipe must be one)."""
    if "choice" in dist:
        return any(value == c and type(value) is type(c) for c in dist["choice"])
    kind = "float" if "float" in dist else "int"
    low, high = dist[kind]
    if kind == "int" and (not isinstance(value, int) or isinstance(value, bool) or (value - low) % dist.get("step", 1)):
        return False
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"model.rnn.hidden_size": 8} -> {"model": {"rnn": {"hidden_size": 8}}}"""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = deepcopy(base)
    for key, value in update.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
