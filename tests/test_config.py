"""conf/ is the single source of parameters; names and ranges are validated."""

import pytest
from omegaconf import OmegaConf

from rnnlab.config import CONF_DIR, PROJECT_ROOT, compose, load_params, task_config, validate
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


# Options made for the translation task's subtree (conf/translate/); the others serve the root task.
TRANSLATION_OPTIONS = {("data", "anki_spa_eng"), ("tokenizer", "seq2seq_word"), ("model", "seq2seq"),
                       ("optim", "adamw_seq2seq")}


def test_every_config_group_option_composes_and_validates():
    for group in ("data", "trainer", "tokenizer", "embeddings", "model", "optim", "task"):
        for option in sorted((CONF_DIR / group).glob("*.yaml")):
            if (group, option.stem) in TRANSLATION_OPTIONS:
                cfg = compose([f"{group}@translate.{group}={option.stem}"])
                validate(task_config(cfg, "translate"))
            else:
                validate(task_config(compose([f"{group}={option.stem}"])))
    for option in sorted((CONF_DIR / "translate").glob("*.yaml")):
        validate(task_config(compose([f"translate={option.stem}"]), "translate"))


def test_task_config_replaces_groups_with_the_subtree(tmp_path):
    cfg = compose()
    translate = task_config(cfg, "translate")
    assert translate.task.name == "translate" and translate.model.name == "seq2seq"
    assert translate.data.name == "anki_spa_eng" and "translate" not in translate
    assert translate.tracking.experiment_name == "rnnlab-translate-anki_spa_eng"
    assert translate.tracking.tracking_uri == cfg.tracking.tracking_uri and translate.seed == cfg.seed
    classify = task_config(cfg)
    assert classify.model.name == "classifier" and "translate" not in classify
    # the same selection under DVC: `task=translate` plus keys in the file's own layout
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(cfg))
    loaded = load_params(path, ["task=translate", "translate.model.cell=lstm", "translate.model.attention=none"])
    assert loaded.task.name == "translate" and loaded.model.cell == "lstm" and loaded.model.attention == "none"
    with pytest.raises(ConfigError, match="Allowed tasks"):
        load_params(path, ["task=summarise"])


@pytest.mark.parametrize("overrides,message", [
    (["translate.model.attention=luong"], "none, additive, dot, general"),
    (["translate.model.attention=dot"], "bidirectional"),
    (["translate.model.attention=none", "translate.model.input_feeding=true"], "input_feeding"),
    (["translate.model.teacher_forcing=1.5"], "teacher_forcing"),
    (["translate.model.decoding.beam=0"], "decoding.beam"),
    (["translate.tokenizer.target.kind=char"], "word, bpe"),
    (["translate.grid.attention=[none,local]"], "grid.attention"),
    (["translate.task.monitor=val_acc"], "val_bleu, val_loss"),
])
def test_translation_settings_are_validated(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(task_config(compose(overrides), "translate"))


def test_queued_dvc_experiments_track_into_the_real_repository(tmp_path, monkeypatch):
    """In a queued `dvc exp run` the stage runs in a temporary copy; DVC_ROOT names the real repository,
    where a relative SQLite tracking URI and artifact folder must point (not into the copy)."""
    params = tmp_path / "params.yaml"
    OmegaConf.save(compose([]), params)
    copy = tmp_path / "exps" / "tmp123"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    cfg = load_params(params, [])
    assert cfg.tracking.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlruns.db"
    assert cfg.tracking.artifact_location == str(tmp_path.resolve() / "mlartifacts")
    monkeypatch.chdir(tmp_path)  # a plain `dvc repro` / workspace experiment: unchanged
    assert load_params(params, []).tracking.tracking_uri == "sqlite:///mlruns.db"


@pytest.mark.parametrize("overrides,match", [
    (["translate.model.output_layer=sampled"], "output_layer"),
    (["translate.model.output_layer=adaptive", "translate.model.label_smoothing=0.1"], "label_smoothing"),
    (["translate.model.output_layer=adaptive", "translate.model.adaptive_cutoffs=[3000,1000]"], "adaptive_cutoffs"),
    (["translate.model.output_layer=adaptive", "translate.model.adaptive_cutoffs=[6000]"], "adaptive_cutoffs"),
])
def test_translation_output_layer_options_are_checked(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(task_config(compose(overrides), "translate"))
    validate(task_config(compose(["translate.model.output_layer=adaptive"]), "translate"))


def test_task_config_of_an_unresolved_hydra_job_config_resolves_the_subtree_references():
    """A Hydra job hands over its config unresolved; `task=translate` must still resolve
    tracking.experiment_name, which refers to ${translate.task.name} (the interactive CLI failed on it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        raw = hydra_compose(config_name="config", overrides=["task=translate"])
    cfg = task_config(raw, "translate")
    assert cfg.tracking.experiment_name == "rnnlab-translate-anki_spa_eng"
    validate(cfg)
