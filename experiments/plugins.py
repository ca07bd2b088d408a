"""Plugins: the user's own datasets and model families, registered without a fork of stw.

A plugin is a Python module whose import registers datasets (`datamodules.register_dataset`) and model families
(`lightning_modules.families.register_family`). Three ways name one:
- an installed package's entry points in the groups `stw.datasets` and `stw.families` (see
  examples/stw-example-plugin/pyproject.toml);
- `--plugin module.path` on the command line (repeatable, before or after the command);
- $STW_PLUGINS=mod_a,mod_b.
The last two are for code that is not installed: the module is imported from PYTHONPATH or the current directory.
`load_plugins` imports them once per process when a command first needs the registries (never for `--help` or an
argument error; sweep workers call it again in their own process). A plugin may only add names: one that would
replace a built-in (or another plugin's) dataset, family or alias is refused and the registries are left as they
were. Every run records the plugins its dataset and family came from (`plugin_tags`), so `stw reproduce` can say
which one is missing and how to get it back (`missing_plugins`).

Only the standard library is imported here at module level, so the CLI can split `--plugin` off at once.
"""

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from experiments.tracking import PROJECT_PACKAGES, Tag

GROUPS = ("stw.datasets", "stw.families")
ENV = "STW_PLUGINS"
OPTION = "--plugin"


@dataclass(frozen=True)
class Plugin:
    """One module to import, where it was named, and the installed distribution providing it (entry points)."""

    module: str  # "package.module" or "package.module:object", as an entry point's value
    source: str  # "entry point 'noisy-sine' (stw.datasets)", "--plugin" or "$STW_PLUGINS"
    distribution: str | None = None
    version: str | None = None

    @property
    def requirement(self) -> str:
        """What a run records and what gets the plugin back: `dist==version` when installed, else the module."""
        return f"{self.distribution}=={self.version}" if self.distribution else self.module

    def describe(self) -> str:
        origin = f"{self.source} of {self.requirement}" if self.distribution else self.source
        return f"plugin {self.module!r} (from {origin})"


LOADED: dict[str, Plugin] = {}  # module -> plugin, every plugin this process imported, in order
# (kind, name) -> the plugin that registered it; kind is "dataset", "family" or "alias".
PROVIDERS: dict[tuple[str, str], Plugin] = {}


def split_plugin_options(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """(`--plugin` modules, the other words): `--plugin MOD`, `--plugin=MOD` and `--plugin a,b` anywhere before a
    `--`. Raises ValueError for a `--plugin` without a module."""
    modules, rest = [], []
    words = list(words)
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            rest += words[i:]
            break
        if word == OPTION or word.startswith(f"{OPTION}="):
            value = word.partition("=")[2] if "=" in word else (words[i + 1] if i + 1 < len(words) else "")
            i += 1 if "=" in word else 2
            if not value or value.startswith("-"):
                raise ValueError(f"{OPTION} needs a module path, e.g. {OPTION} my_package.my_datasets")
            modules += names(value)
            continue
        rest.append(word)
        i += 1
    return modules, rest


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def entry_point_plugins() -> list[Plugin]:
    found = []
    for group in GROUPS:
        for point in metadata.entry_points(group=group):
            dist = point.dist
            found.append(Plugin(point.value, f"entry point {point.name!r} ({group})",
                                dist.metadata["Name"] if dist else None, dist.version if dist else None))  # fmt: skip
    return found


def explicit_modules() -> list[str]:
    """The `--plugin`/$STW_PLUGINS modules this process loaded: what a sweep hands to its worker processes."""
    return [plugin.module for plugin in LOADED.values() if plugin.distribution is None]


def load_plugins(modules: Sequence[str] = ()) -> list[Plugin]:
    """Import every installed entry point, then `modules` (from --plugin), then $STW_PLUGINS; each once per process."""
    import datamodules  # noqa: F401  the built-in registries first, so a plugin can only add to them
    import lightning_modules.families  # noqa: F401

    requested = [Plugin(module, OPTION) for module in modules]
    requested += [Plugin(module, f"${ENV}") for module in names(os.environ.get(ENV, ""))]
    if requested and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # the `stw` script's sys.path lacks the current directory; installed code wins
    for plugin in [*entry_point_plugins(), *requested]:
        if plugin.module not in LOADED:
            _load(plugin)
    return list(LOADED.values())


def _registered() -> dict[tuple[str, str], Any]:
    from datamodules import DATASETS
    from lightning_modules.families import ALIASES, FAMILIES

    return {
        **{("dataset", name): cls for name, cls in DATASETS.items()},
        **{("family", name): family for name, family in FAMILIES.items()},
        **{("alias", name): alias for name, alias in ALIASES.items()},
    }


def _restore(before: dict[tuple[str, str], Any]) -> None:
    from datamodules import DATASETS
    from lightning_modules.families import ALIASES, FAMILIES

    for kind, registry in (("dataset", DATASETS), ("family", FAMILIES), ("alias", ALIASES)):
        registry.clear()
        registry.update({name: value for (k, name), value in before.items() if k == kind})


def _import(plugin: Plugin) -> None:
    metadata.EntryPoint(name=plugin.module, value=plugin.module, group="stw").load()


def _load(plugin: Plugin) -> None:
    from datamodules.errors import ConfigError

    before, modules_before = _registered(), set(sys.modules)
    package = plugin.module.partition(":")[0].split(".")[0]

    def undo() -> None:  # a refused plugin leaves nothing behind, and a retry imports it afresh
        _restore(before)
        for name in set(sys.modules) - modules_before:
            if name == package or name.startswith(f"{package}."):  # its own modules only, never a library's
                del sys.modules[name]

    try:
        _import(plugin)
    except Exception as error:
        undo()
        raise ConfigError(f"{plugin.describe()} failed to import: {type(error).__name__}: {error}; "
                          f"{_import_fix(plugin, error)}") from error  # fmt: skip
    after = _registered()
    clashes = [key for key, value in before.items() if after.get(key) is not value]
    model_names = {name for kind, name in before if kind in ("family", "alias")}
    clashes += [key for key in after.keys() - before.keys() if key[0] in ("family", "alias") and key[1] in model_names]
    if clashes:
        undo()
        kind, name = clashes[0]
        raise ConfigError(f"{plugin.describe()} registers {_kind_word(kind)} {name!r}, which {_owner(kind, name)}: a "
                          f"plugin may only add names, never replace one; register it under another name")  # fmt: skip
    LOADED[plugin.module] = plugin
    for key in after.keys() - before.keys():
        PROVIDERS[key] = plugin


def _import_fix(plugin: Plugin, error: Exception) -> str:
    if plugin.distribution:
        return (f"fix or reinstall the package {plugin.distribution}, or remove it (pip uninstall "
                f"{plugin.distribution}) to run stw without it")  # fmt: skip
    top = plugin.module.partition(":")[0]
    if isinstance(error, ModuleNotFoundError) and error.name and f"{top}.".startswith(f"{error.name}."):
        return (f"no module {top!r} on PYTHONPATH or in the current directory ({os.getcwd()}): check the name, or add "
                "the folder holding it to PYTHONPATH")  # fmt: skip
    return f"run `python -c 'import {top}'` to see the error on its own, and fix the module"


def _kind_word(kind: str) -> str:
    return {"dataset": "the dataset", "family": "the model family", "alias": "the model alias"}[kind]


def _owner(kind: str, name: str) -> str:
    for key in ((kind, name), ("family", name), ("alias", name)):
        if key in PROVIDERS:
            return f"{PROVIDERS[key].describe()} already registers"
    return "is built into stw"


def provider(kind: str, name: str, registered: Any) -> Plugin | None:
    """The plugin behind a registered name; None for stw's own. A name whose registration `load_plugins` did not
    see (its module was imported before) is traced by the module of its class: to the loaded plugin holding that
    module, else to the module itself and the distribution installing it."""
    if (kind, name) in PROVIDERS:
        return PROVIDERS[(kind, name)]
    module = getattr(registered, "__module__", "")
    if not module or module.split(".")[0] in PROJECT_PACKAGES:
        return None
    holding = [p for p in LOADED.values() if f"{module}.".startswith(f"{p.module.partition(':')[0]}.")]
    if holding:
        return max(holding, key=lambda plugin: plugin.distribution is not None)
    dists = metadata.packages_distributions().get(module.split(".")[0], [])
    return Plugin(module, "an import", dists[0], metadata.version(dists[0])) if dists else Plugin(module, "an import")


def plugins_used(data: str, families: Iterable[str]) -> list[Plugin]:
    """The plugins a run on dataset `data` with these families (or aliases) needs, each once."""
    from datamodules import DATASETS
    from lightning_modules.families import ALIASES, FAMILIES

    found = [provider("dataset", data, DATASETS[data])] if data in DATASETS else []
    for name in families:
        if name in ALIASES and name not in FAMILIES:  # an alias a plugin added may point at a built-in family
            found.append(PROVIDERS.get(("alias", name)))
            name = ALIASES[name][0]
        if name in FAMILIES:
            found.append(provider("family", name, FAMILIES[name].encoder))
    return list({plugin.requirement: plugin for plugin in found if plugin is not None}.values())


def plugin_tags(data: str, families: Iterable[str]) -> dict[str, str]:
    """stw.plugins (`dist==version` for installed plugins, the module for --plugin ones, comma-separated) and, for
    installed ones, their version as a package tag, which `stw reproduce` checks like torch's."""
    used = plugins_used(data, families)
    if not used:
        return {}
    tags = {Tag.PLUGINS: ", ".join(plugin.requirement for plugin in used)}
    tags.update({f"{Tag.VERSION}{p.distribution}": p.version for p in used if p.distribution and p.version})
    return tags


def recorded(tags: dict[str, str]) -> list[str]:
    """The entries of a run's stw.plugins tag."""
    return names(tags.get(Tag.PLUGINS, ""))


def installed_versions(tags: dict[str, str]) -> dict[str, str]:
    """The version tags, as this environment would write them, of the plugin packages a run recorded."""
    versions = {}
    for entry in recorded(tags):
        dist = entry.partition("==")[0] if "==" in entry else None
        if dist:
            try:
                versions[f"{Tag.VERSION}{dist}"] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return versions


def how_to_get(entry: str) -> str:
    if "==" in entry:
        return f"install it (pip install '{entry}'), which registers it through its entry points"
    return (f"pass --plugin {entry} (or set {ENV}={entry}) with the folder holding it on PYTHONPATH or as the "
            "current directory")  # fmt: skip


def missing_plugins(config: dict[str, Any], tags: dict[str, str]) -> str | None:
    """Why a run's dataset or family cannot be built here, naming the plugin it recorded and how to get it back;
    None when both are registered."""
    from datamodules import DATASETS
    from lightning_modules.families import ALIASES, FAMILIES

    data, family = (section.get(key) if isinstance(section := config.get(name), dict) else None
                    for name, key in (("data", "name"), ("model", "family")))  # fmt: skip
    missing = [f"dataset {data!r}"] if data is not None and data not in DATASETS else []
    if family is not None and family not in FAMILIES and family not in ALIASES:
        missing.append(f"model family {family!r}")
    if not missing:
        return None
    what = f"{' and '.join(missing)}, which {'are' if len(missing) > 1 else 'is'} not registered here"
    if entries := recorded(tags):
        if len(entries) == 1:
            return f"it used the {what}; it came from the plugin {entries[0]}: {how_to_get(entries[0])}"
        ways = "; ".join(f"for {entry}, {how_to_get(entry)}" for entry in entries)
        return f"it used the {what}; they came from the plugins {', '.join(entries)}: {ways}"
    return (f"it used the {what}, and it recorded no plugin (no {Tag.PLUGINS} tag): it was trained by another version "
            f"of stw, or with a plugin loaded outside stw; registered datasets: {', '.join(sorted(DATASETS))}; "
            f"families: {', '.join(sorted(FAMILIES))}")  # fmt: skip
