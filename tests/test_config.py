"""The run config: one validated object built from the registries, CLI words and YAML files."""

import pytest
import yaml

from datamodules.errors import ConfigError
from experiments.config import config_from_dict, dump_config, flatten, parse_run_args
from experiments.sweep.space import knobs_for, load_space, nest


def test_cli_words_and_options_build_one_config():
    config = parse_run_args(["--data", "ett", "--model", "lstm", "model.hidden_size=16", "--trainer.max_epochs", "2"])
    assert config["data"]["name"] == "ett"
    assert config["model"] == {**config["model"], "family": "lstm", "cell": "lstm", "hidden_size": 16}
    assert config["trainer"]["max_epochs"] == 2
    assert set(config) == {"data", "model", "task", "optim", "trainer", "seed"}


@pytest.mark.parametrize(
    "words",
    [
        ["model.family=sparsetsf", "data.name=moving-shapes"],
        ["--model.family", "sparsetsf", "--data.name", "moving-shapes"],
        ["--model.family=sparsetsf", "--data.name=moving-shapes"],
    ],
)
def test_the_full_keys_that_help_lists_choose_the_family_and_dataset_like_model_and_data(words):
    # The family's and dataset's options differ (linear's decomposition is no option of sparsetsf), so the
    # parser must be built for the ones these words name, as it is for `--model X --data Y`.
    config = parse_run_args(words)
    assert config["model"] == parse_run_args(["--model", "sparsetsf", "--data", "moving-shapes"])["model"]
    assert "decomposition" not in config["model"] and config["data"]["name"] == "moving-shapes"


def test_alias_sets_its_family_defaults():
    assert parse_run_args(["--model", "gru"])["model"]["cell"] == "gru"


def test_misspelt_key_names_the_valid_keys():
    with pytest.raises(ConfigError) as error:
        parse_run_args(["--model", "lstm", "model.hiden_size=3"])
    assert "model.hiden_size" in str(error.value)
    assert "model.hidden_size" in str(error.value.args[0].split("valid keys:")[1])


def test_bad_value_is_an_error():
    with pytest.raises(ConfigError, match="cell"):
        parse_run_args(["--model", "rnn", "model.cell=transformer"])


def test_unknown_family_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="choose one of:.*transformer"):
        parse_run_args(["--model", "resnet"])


def test_saved_config_round_trips(tmp_path):
    config = parse_run_args(["--data", "ett", "--model", "cnn", "seed=7", "data.lookback=48"])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert parse_run_args(["--config", str(path)]) == config
    assert config_from_dict(yaml.safe_load(path.read_text())) == config


def test_flatten_makes_dotted_params():
    flat = flatten(parse_run_args(["--model", "cnn_rnn"]))
    assert "model.rnn.hidden_size" in flat and "data.lookback" in flat and "seed" in flat


@pytest.mark.parametrize("data", ["ett", "stock"])
@pytest.mark.parametrize(
    "family",
    [
        "linear",
        "mlp",
        "cnn",
        "rnn",
        "transformer",
        "cnn_rnn",
        "cnn_transformer",
        "cnn_rnn_transformer",
        "segrnn",
        "sparsetsf",
    ],
)
def test_every_forecasting_search_space_knob_is_a_valid_config_key(data, family):
    knobs = knobs_for(load_space(), data, family, fixed=set())
    for pick in (0, -1):  # the first and the last value of every knob
        chosen = {
            path: (dist.get("choice") or dist.get("float") or dist.get("int"))[pick] for path, dist in knobs.items()
        }
        config = config_from_dict(nest({**chosen, "data.name": data, "model.family": family}))
        assert config["model"]["family"] == family


@pytest.mark.parametrize("data", ["sms", "gestures", "ett"])
def test_runs_whose_input_kind_has_no_stem_options_have_no_stem_section(data):
    assert "stem" not in parse_run_args(["--data", data, "--model", "rnn"])
    with pytest.raises(ConfigError, match="stem.channels"):
        parse_run_args(["--data", data, "--model", "rnn", "stem.channels=4"])


def test_a_saved_config_with_a_stem_section_round_trips(tmp_path):
    config = parse_run_args(["--data", "moving-shapes", "--model", "gru", "stem.channels=8", "stem.pooling=max"])
    assert config["stem"] == {"channels": 8, "layers": 3, "pooling": "max", "coords": True}
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config))
    assert config_from_dict(yaml.safe_load(path.read_text())) == config
    assert parse_run_args(["--config", str(path)]) == config
    assert config_from_dict({"data": {"name": "moving-shapes"}, "stem": {"layers": 2}})["stem"]["layers"] == 2


@pytest.mark.parametrize(
    "words",
    [
        ["--data.paths", "a.txt", "B.csv"],
        ["--data.paths", "a.txt,B.csv"],
        ["data.paths=a.txt,B.csv"],
        ["data.paths=[a.txt,B.csv]"],
        ["--data.paths=a.txt", "--data.paths+=B.csv"],
    ],
)
def test_a_list_option_takes_the_forms_people_write(words):
    config = parse_run_args(["--data", "stock", *words, "data.lookback=5"])
    assert config["data"]["paths"] == ["a.txt", "B.csv"] and config["data"]["lookback"] == 5
    # The tickers a run reads are its files' names, never the default beside them.
    assert config["data"]["tickers"] == ["a", "b"]
    assert "spy" not in dump_config(config)


def test_a_list_option_given_one_word_is_a_list_of_one():
    assert parse_run_args(["--data", "stock", "--data.tickers", "ko"])["data"]["tickers"] == ["ko"]
