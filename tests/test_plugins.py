"""Plugins: the user's own datasets and families through entry points, `--plugin` and $STW_PLUGINS, recorded on
every run, loaded in sweep workers, and refused clearly when broken, clashing or missing."""

import importlib.util
import os
import subprocess
import sys
import textwrap
import uuid
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from datamodules import DATASETS
from datamodules.errors import ConfigError
from datamodules.ett import EttDataModule
from experiments import plugins, tracking
from experiments.cli import main
from experiments.plugins import load_plugins, missing_plugins, plugin_tags, split_plugin_options
from lightning_modules.families import ALIASES, FAMILIES

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "stw-example-plugin"
EXAMPLE_DIST = "stw-example-plugin"
SMALL_ETT = ["--data", "ett", "data.lookback=48", "data.horizon=24", "trainer.max_epochs=1",
             "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "--quiet"]  # fmt: skip
# A family plugin of the kind a user writes in their own folder: the mean over time, then the head.
FAMILY_PLUGIN = '''
from dataclasses import dataclass

from lightning_modules.families import register_family
from lightning_modules.families.base import Encoder, FamilyConfig


@dataclass
class MeanConfig(FamilyConfig):
    """Mean over time.

    Args:
        dropout: unused.
    """


@register_family("{family}", MeanConfig)
class MeanEncoder(Encoder):
    def __init__(self, config, in_dim, seq_len):
        super().__init__()
        self.out_dim, self.out_len = in_dim, 1

    def forward(self, x, mask=None):
        return x.mean(dim=1, keepdim=True), None
'''


def example_installed() -> bool:
    try:
        metadata.distribution(EXAMPLE_DIST)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(autouse=True)
def isolated_registries():
    """Whatever a test registers or loads is gone afterwards, so every test starts from the same registries."""
    saved = [
        (registry, dict(registry)) for registry in (DATASETS, FAMILIES, ALIASES, plugins.LOADED, plugins.PROVIDERS)
    ]
    modules, path = set(sys.modules), list(sys.path)
    yield
    sys.path[:] = path
    for registry, content in saved:
        registry.clear()
        registry.update(content)
    for name in set(sys.modules) - modules:
        if name.startswith(("stw_test_plugin_", "stw_example_plugin")):  # so the next test imports them afresh
            del sys.modules[name]


@pytest.fixture()
def clean_checkout(monkeypatch):
    """Reproduction compares the code with the run's commit; this working tree may hold uncommitted work."""
    state = {tracking.Tag.GIT_COMMIT: "0" * 40, tracking.Tag.GIT_DIRTY: "false"}
    monkeypatch.setattr(tracking, "git_state", lambda: dict(state))


def write_module(folder: Path, text: str) -> str:
    """A module in `folder`, not installed, under a name no other test uses."""
    module = f"stw_test_plugin_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(textwrap.dedent(text))
    return module


def write_plugin(folder: Path, family: str | None = None) -> tuple[str, str]:
    """A family plugin module in `folder` and the family it registers (a fresh name unless given)."""
    family = family or f"mean_{uuid.uuid4().hex[:8]}"
    return write_module(folder, FAMILY_PLUGIN.format(family=family)), family


def example_words(monkeypatch) -> tuple[list[str], str]:
    """`--plugin stw_example_plugin` (from src/ when the example is not installed) and the stw.plugins value the
    run records: the distribution when installed (its entry points load it), the module otherwise."""
    if not example_installed():
        monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
        return ["--plugin", "stw_example_plugin"], "stw_example_plugin"
    return ["--plugin", "stw_example_plugin"], f"{EXAMPLE_DIST}=={metadata.version(EXAMPLE_DIST)}"


def only_run(uri: str, experiment: str, role: str | None = None):
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              order_by=["attributes.start_time ASC"])  # fmt: skip
    return [run for run in runs if role is None or run.data.tags.get("stw.role") == role]


def test_plugin_options_are_split_off_anywhere_before_a_double_dash():
    words = ["--plugin", "a", "train", "--plugin=b,c", "x=1", "--", "--plugin", "d"]
    assert split_plugin_options(words) == (["a", "b", "c"], ["train", "x=1", "--", "--plugin", "d"])
    for bad in (["train", "--plugin"], ["--plugin", "--debug", "train"], ["--plugin="]):
        with pytest.raises(ValueError, match="needs a module path"):
            split_plugin_options(bad)
    assert main(["train", "--plugin"]) == 2


def test_help_and_argument_errors_import_no_plugin_and_no_heavy_library():
    for words in (["--plugin", "no_such_module", "sweep", "--help"], ["sweep", "--trials", "many", "--plugin", "x"],
                  ["--plugin", "no_such_module", "--help"]):  # fmt: skip
        probe = (f"import sys\nfrom experiments.cli import main\ntry:\n    main({words!r})\nexcept SystemExit:\n    pass\n"
                 "print('imported:' + ','.join(sorted({m.split('.')[0] for m in sys.modules} & "
                 "{'torch', 'lightning', 'mlflow', 'optuna', 'datamodules'})))")  # fmt: skip
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
        assert result.stdout.rpartition("imported:")[2].strip() == "", words


def test_stw_plugins_names_uninstalled_modules_importable_from_the_current_directory(tmp_path, monkeypatch):
    first, first_family = write_plugin(tmp_path)
    second, second_family = write_plugin(tmp_path)
    monkeypatch.chdir(tmp_path)  # not on sys.path: the loader adds the current directory, as `stw` needs
    monkeypatch.setenv(plugins.ENV, f"{first}, {second}")
    load_plugins()
    assert {first_family, second_family} <= FAMILIES.keys()
    assert plugins.LOADED[first].source == "$STW_PLUGINS" and plugins.explicit_modules()[-2:] == [first, second]
    assert plugin_tags("ett", [second_family]) == {"stw.plugins": second}
    assert plugin_tags("ett", ["lstm"]) == {}  # built-ins need no plugin


@pytest.mark.parametrize(
    ("body", "source", "says"),
    [
        ("raise RuntimeError('the plugin is broken')", "--plugin", "RuntimeError: the plugin is broken"),
        ("import no_such_dependency_xyz", "--plugin", "No module named 'no_such_dependency_xyz'"),
        (None, "$STW_PLUGINS", "no module"),
    ],
)
def test_a_plugin_that_fails_to_import_is_one_error_naming_it_its_source_and_the_exception(
    tmp_path, monkeypatch, capsys, body, source, says
):
    module = write_module(tmp_path, body) if body is not None else f"stw_test_plugin_{uuid.uuid4().hex[:8]}"
    monkeypatch.syspath_prepend(str(tmp_path))
    if source == "$STW_PLUGINS":
        monkeypatch.setenv(plugins.ENV, module)
        words = ["train", *SMALL_ETT]
    else:
        words = ["--plugin", module, "train", *SMALL_ETT]
    assert main(words) == 2
    error = capsys.readouterr().err
    assert f"plugin '{module}' (from {source})" in error and "failed to import" in error and says in error
    assert module not in plugins.LOADED


def test_a_plugin_may_not_replace_a_built_in_dataset_family_or_alias(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    for kind, module in (
        ("dataset 'ett'", write_module(tmp_path, "from datamodules import register_dataset\n"
                                       "from datamodules.ett import EttDataModule\n"
                                       "register_dataset('ett')(type('MyEtt', (EttDataModule,), {}))\n")),
        ("family 'lstm'", write_plugin(tmp_path, "lstm")[0]),  # `lstm` is the rnn family's alias
        ("family 'rnn'", write_plugin(tmp_path, "rnn")[0]),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=f"registers the (model )?{kind}") as refused:
            load_plugins([module])
        assert "built into stw" in str(refused.value) and "another name" in str(refused.value)
    assert DATASETS["ett"] is EttDataModule and ALIASES["lstm"][0] == "rnn" and FAMILIES["rnn"].name == "rnn"
    assert FAMILIES["rnn"].encoder.__module__ == "lightning_modules.families.rnn"


def test_a_second_plugin_may_not_take_a_name_the_first_registered(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    first, family = write_plugin(tmp_path)
    second, _ = write_plugin(tmp_path, family)
    load_plugins([first])
    with pytest.raises(ConfigError, match=f"plugin '{first}' \\(from --plugin\\) already registers"):
        load_plugins([second])
    assert FAMILIES[family].encoder.__module__ == first


def test_a_missing_plugin_is_named_with_how_to_get_it_back():
    config = {"data": {"name": "no-such-data"}, "model": {"family": "lstm"}}
    installed = missing_plugins(config, {"stw.plugins": "my-plugins==1.2.0"})
    assert "dataset 'no-such-data'" in installed and "pip install 'my-plugins==1.2.0'" in installed
    module = missing_plugins(config, {"stw.plugins": "my_module"})
    assert "--plugin my_module" in module and "STW_PLUGINS=my_module" in module
    assert "recorded no plugin" in missing_plugins(config, {})
    assert missing_plugins({"data": {"name": "ett"}, "model": {"family": "lstm"}}, {}) is None


@pytest.mark.skipif(not example_installed(), reason=f"the example plugin is not installed: pip install -e {EXAMPLE} "
                    "--no-deps (make install does it)")  # fmt: skip
def test_the_installed_example_registers_through_its_entry_points():
    points = {point.group: point.name for group in plugins.GROUPS for point in metadata.entry_points(group=group)}
    assert points["stw.datasets"] == "noisy-sine" and points["stw.families"] == "last_linear"
    load_plugins()
    assert "noisy-sine" in DATASETS and "last_linear" in FAMILIES
    assert {p.distribution for p in plugins.LOADED.values() if p.module.startswith("stw_example_plugin")} == {
        EXAMPLE_DIST
    }
    version = metadata.version(EXAMPLE_DIST)
    assert plugin_tags("noisy-sine", ["last_linear"]) == {
        "stw.plugins": f"{EXAMPLE_DIST}=={version}",
        f"stw.version.{EXAMPLE_DIST}": version,
    }


@pytest.mark.slow
def test_the_example_trains_predicts_reproduces_and_sweeps(tmp_path, monkeypatch, clean_checkout, capsys):
    plugin, recorded = example_words(monkeypatch)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    data = ["--data", "noisy-sine", "trainer.max_epochs=1", "--quiet", "--tracking-uri", uri]
    assert main([*plugin, "train", *data, "--model", "last_linear", "model.hidden_size=4"]) == 0
    [run] = only_run(uri, "noisy-sine")
    assert run.info.status == "FINISHED" and run.data.tags["stw.plugins"] == recorded

    from stw_example_plugin.noisy_sine import series

    series(40, 0.1, seed=9).to_csv(tmp_path / "new.csv")
    predict = ["predict", run.info.run_id, "--input", str(tmp_path / "new.csv"), "--output", str(tmp_path / "out.csv")]
    assert main([*plugin, *predict, "--tracking-uri", uri]) == 0
    table = pd.read_csv(tmp_path / "out.csv")
    assert len(table) == (40 - 24 + 1) * 12 and {"daily_forecast", "weekly_actual"} <= set(table.columns)

    assert main([*plugin, "reproduce", run.info.run_id, "--tracking-uri", uri, "--quiet"]) == 0
    assert "reproduced: all" in capsys.readouterr().out

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = ["sweep", "--data", "noisy-sine", "--families", "last_linear,linear", "--trials", "2", "--study", "s",
             "--storage", storage, "--tracking-uri", uri, "--pruner", "none", "trainer.max_epochs=1", "--quiet"]  # fmt: skip
    assert main([*plugin, *sweep]) == 0
    trials = only_run(uri, "noisy-sine", "trial")
    assert len(trials) == 2 and {t.info.status for t in trials} == {"FINISHED"}
    assert {t.data.tags["stw.plugins"] for t in trials if t.data.tags["stw.family"] == "last_linear"} <= {recorded}
    [parent] = only_run(uri, "noisy-sine", "sweep")
    assert parent.data.tags["stw.plugins"] == recorded


@pytest.mark.slow
def test_a_plugin_run_reproduces_with_the_plugin_and_is_refused_without_it(
    tmp_path, monkeypatch, clean_checkout, capsys
):
    module, family = write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["train", "--plugin", module, *SMALL_ETT, "--model", family, "--tracking-uri", uri]) == 0
    [run] = only_run(uri, "ett")
    assert run.data.tags["stw.plugins"] == module and run.data.tags["stw.family"] == family

    del FAMILIES[family]  # a fresh process that was not given the plugin
    plugins.LOADED.pop(module)
    plugins.PROVIDERS.pop(("family", family))
    del sys.modules[module]
    assert main(["reproduce", run.info.run_id, "--tracking-uri", uri]) == 2
    refusal = capsys.readouterr().err
    assert f"model family '{family}'" in refusal and "not registered here" in refusal
    assert f"--plugin {module}" in refusal and f"STW_PLUGINS={module}" in refusal

    monkeypatch.setenv(plugins.ENV, module)
    assert main(["reproduce", run.info.run_id, "--tracking-uri", uri, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "reproduced: all" in captured.out and f"plugin module {module}" in captured.err


@pytest.mark.slow
def test_sweep_workers_in_their_own_processes_load_the_plugins(tmp_path, monkeypatch):
    module, family = write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit sys.path, not the registry
    uri, storage = f"sqlite:///{tmp_path / 'mlflow.db'}", f"sqlite:///{tmp_path / 'optuna.db'}"
    words = ["--plugin", module, "sweep", "--families", family, "--trials", "2", "--workers", "2", "--study", "w",
             "--storage", storage, "--tracking-uri", uri, "--pruner", "none", *SMALL_ETT]  # fmt: skip
    assert importlib.util.find_spec(module) is not None
    assert main(words) == 0
    trials = only_run(uri, "ett", "trial")
    assert len(trials) == 2 and {t.info.status for t in trials} == {"FINISHED"}
    assert {t.data.tags["stw.plugins"] for t in trials} == {module}
