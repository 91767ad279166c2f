"""conf/ is the single source of parameters; names and ranges are validated."""

import pytest
from omegaconf import OmegaConf

from rnnlab.config import CONF_DIR, PROJECT_ROOT, compose, load_params, validate
from rnnlab.errors import ConfigError


def test_committed_params_equal_composition_of_conf():
    committed = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "params.yaml"))
    composed = OmegaConf.to_container(compose())
    assert committed == composed, "params.yaml drifted from conf/: run `make params` and commit it"


def test_dump_params_matches_compose(tmp_path):
    from rnnlab.config import dump_params

    dump_params(tmp_path / "params.yaml", ["model.cell=gru", "data=trec"])
    dumped = OmegaConf.load(tmp_path / "params.yaml")
    assert dumped.model.cell == "gru" and dumped.data.name == "trec"
    assert OmegaConf.to_container(dumped) == OmegaConf.to_container(compose(["model.cell=gru", "data=trec"]))


@pytest.mark.parametrize("key,value,allowed", [
    ("model.cell", "transformer", "rnn, lstm, gru"),
    ("model.pooling", "sum", "last, mean, max, attention"),
    ("model.embedding_mode", "elmo", "frozen, finetune, random"),
])
def test_unknown_names_list_the_allowed_values(key, value, allowed):
    cfg = compose([f"{key}={value}"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert value in str(err.value) and allowed in str(err.value)


def test_unknown_dataset_lists_available_configs():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose(["data=imdb"])
    message = str(err.value)
    for name in ("rotten_tomatoes", "sms_spam", "trec"):
        assert name in message


@pytest.mark.parametrize("override", ["model.hidden_size=0", "model.dropout=1.5", "optim.lr=-1",
                                      "optim.batch_size=2.5", "trainer.max_epochs=0"])
def test_out_of_range_values_are_rejected(override):
    with pytest.raises(ConfigError) as err:
        validate(compose([override]))
    assert override.split("=")[0] in str(err.value)


def test_grid_names_are_validated():
    with pytest.raises(ConfigError, match="grid.cell"):
        validate(compose(["grid.cell=[lstm,cnn]"]))


def test_load_params_applies_dotlist(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(compose()))
    cfg = load_params(path, ["model.cell=gru", "model.hidden_size=7", "out_dir=models/x"])
    assert cfg.model.cell == "gru" and cfg.model.hidden_size == 7 and cfg.out_dir == "models/x"
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(path, ["model.cel=gru"])
    with pytest.raises(ConfigError, match="make params"):
        load_params(tmp_path / "missing.yaml", [])


def test_every_config_group_option_composes_and_validates():
    for group in ("data", "trainer", "tokenizer", "embeddings", "model", "optim", "task"):
        for option in sorted((CONF_DIR / group).glob("*.yaml")):
            validate(compose([f"{group}={option.stem}"]))
