"""conf/ is the single source of parameters; names and ranges are validated."""

import functools

import pytest
from omegaconf import OmegaConf

from rnnlab.config import CONF_DIR, PROJECT_ROOT, compose, family_view, load_params, validate
from rnnlab.errors import ConfigError


@functools.cache
def _default_yaml() -> str:
    """The default composition, made once (a Hydra composition takes 1.5 to 4 s on 2 cores)."""
    return OmegaConf.to_yaml(compose())


def with_values(overrides: list[str]):
    """The default composition with `key=value` overrides merged on top, values parsed as OmegaConf dotlist items
    (as rnnlab.config.load_params parses a stage's overrides of params.yaml). Values only: the tests of config
    *group* selection and of `+` keys go through Hydra's compose() itself."""
    assert all("@" not in o and not o.startswith(("+", "~")) for o in overrides), overrides
    return OmegaConf.merge(OmegaConf.create(_default_yaml()), OmegaConf.from_dotlist(overrides))


def test_committed_params_equal_composition_of_conf():
    committed = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "params.yaml"))
    composed = OmegaConf.to_container(compose())
    assert committed == composed, "params.yaml drifted from conf/: run `make params` and commit it"


def test_dump_params_matches_compose(tmp_path):
    from rnnlab.config import dump_params

    overrides = ["classify.model.cell=gru", "data@classify.data=trec"]
    dump_params(tmp_path / "params.yaml", overrides)
    dumped = OmegaConf.load(tmp_path / "params.yaml")
    assert dumped.classify.model.cell == "gru" and dumped.classify.data.name == "trec"
    assert OmegaConf.to_container(dumped) == OmegaConf.to_container(compose(overrides))


@pytest.mark.parametrize("key,value,allowed", [
    ("classify.model.cell", "transformer", "rnn, lstm, gru"),
    ("classify.model.pooling", "sum", "last, mean, max, attention"),
    ("classify.model.embedding_mode", "elmo", "frozen, finetune, random"),
])
def test_unknown_names_list_the_allowed_values(key, value, allowed):
    cfg = family_view(with_values([f"{key}={value}"]), "classify")
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert value in str(err.value) and allowed in str(err.value)


def test_unknown_dataset_lists_available_configs():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose(["data@classify.data=imdb"])
    message = str(err.value)
    for name in ("rotten_tomatoes", "sms_spam", "trec"):
        assert name in message


@pytest.mark.parametrize("override", ["classify.model.hidden_size=0", "classify.model.dropout=1.5",
                                      "classify.optim.lr=-1", "classify.optim.batch_size=2.5",
                                      "classify.trainer.max_epochs=0"])
def test_out_of_range_values_are_rejected(override):
    with pytest.raises(ConfigError) as err:
        validate(family_view(with_values([override]), "classify"))
    assert override.split("=")[0] in str(err.value)


def test_grid_names_are_validated():
    with pytest.raises(ConfigError, match="grid.cell"):
        validate(family_view(with_values(["classify.grid.cell=[lstm,cnn]"]), "classify"))


def test_load_params_applies_dotlist(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(with_values([])))
    cfg = load_params(path, ["classify.model.cell=gru", "classify.model.hidden_size=7", "out_dir=models/x"])
    assert cfg.model.cell == "gru" and cfg.model.hidden_size == 7 and cfg.out_dir == "models/x"
    with pytest.raises(ConfigError, match="does not exist"):
        load_params(path, ["classify.model.cel=gru"])
    with pytest.raises(ConfigError, match="make params"):
        load_params(tmp_path / "missing.yaml", [])


# Options made for the sequence-to-sequence family's subtree (conf/seq2seq/); the others serve `classify`.
SEQ2SEQ_OPTIONS = {("data", "anki_spa_eng"), ("tokenizer", "seq2seq_word"), ("model", "seq2seq"),
                   ("optim", "adamw_seq2seq")}
LM_OPTIONS = {("data", "wikitext2"), ("tokenizer", "lm_word"), ("model", "lm"), ("optim", "adamw_lm")}
NER_OPTIONS = {("data", "wnut16"), ("tokenizer", "ner_word"), ("model", "tagger")}
SQL_OPTIONS = {("data", "nycflights"), ("tokenizer", "sql_word"), ("model", "text2sql")}


@pytest.mark.slow
def test_every_config_group_option_composes_and_validates():
    for group in ("data", "trainer", "tokenizer", "embeddings", "model", "optim"):
        for option in sorted((CONF_DIR / group).glob("*.yaml")):
            if (group, option.stem) in SEQ2SEQ_OPTIONS | LM_OPTIONS | NER_OPTIONS | SQL_OPTIONS:
                family = ("seq2seq" if (group, option.stem) in SEQ2SEQ_OPTIONS else
                          "lm" if (group, option.stem) in LM_OPTIONS else
                          "ner" if (group, option.stem) in NER_OPTIONS else "sql")
                validate(family_view(compose([f"{group}@{family}.{group}={option.stem}"]), family))
            else:
                validate(family_view(compose([f"{group}@classify.{group}={option.stem}"]), "classify"))
    for family in ("classify", "seq2seq", "lm", "ner", "sql"):
        for option in sorted((CONF_DIR / family).glob("*.yaml")):
            validate(family_view(compose([f"{family}={option.stem}"]), family))
            validate(family_view(compose([f"family={family}", f"{family}={option.stem}"])))


def test_family_view_lifts_the_subtree_and_drops_the_other_families(tmp_path):
    cfg = with_values([])
    seq2seq = family_view(cfg, "seq2seq")
    assert seq2seq.family == "seq2seq" and seq2seq.model.name == "seq2seq"
    assert seq2seq.data.name == "anki_spa_eng" and "seq2seq" not in seq2seq and "classify" not in seq2seq
    assert seq2seq.tracking.experiment_name == "rnnlab-seq2seq-anki_spa_eng"
    assert seq2seq.tracking.tracking_uri == cfg.tracking.tracking_uri and seq2seq.seed == cfg.seed
    assert seq2seq.trainer.max_epochs == seq2seq.data.train_epochs == 6  # the data set's epoch count
    classify = family_view(cfg)  # the config's own `family` (classify by default)
    assert classify.family == "classify" and classify.model.name == "classifier"
    assert "seq2seq" not in classify and "classify" not in classify
    # the same selection under DVC: `family=seq2seq` plus keys in the file's own (public) spelling
    path = tmp_path / "params.yaml"
    path.write_text(OmegaConf.to_yaml(cfg))
    loaded = load_params(path, ["family=seq2seq", "seq2seq.model.cell=lstm", "seq2seq.model.attention=none"])
    assert loaded.family == "seq2seq" and loaded.model.cell == "lstm" and loaded.model.attention == "none"
    with pytest.raises(ConfigError, match="Known families"):
        load_params(path, ["family=summarise"])
    # the studies' settings are no family's parameters (not logged with every run)
    assert "long_range" in cfg and "long_range" not in classify and "long_range" not in seq2seq
    from rnnlab.config import public_config
    from rnnlab.tracking.mlflow_utils import flatten

    assert not [k for k in flatten(public_config(classify)) if "long_range" in k]


def test_a_config_group_chosen_without_its_package_is_refused_not_ignored():
    """`+gate_arm=lstm` (no `@classify.model`) lands at the root, where nothing reads it: the run would train
    the default cell under the arm's name."""
    cfg = compose(["+gate_arm=lstm_peepholes"])
    assert cfg.gate_arm.cell_variant == "peepholes"
    with pytest.raises(ConfigError, match=r"root key\(s\) gate_arm that no family reads.*\+gate_arm@classify.model=lstm"):
        family_view(cfg, "classify")
    assert family_view(compose(["+gate_arm@classify.model=lstm_peepholes"]), "classify").model.cell_variant == "peepholes"


@pytest.mark.parametrize("overrides,message", [
    (["seq2seq.model.attention=luong"], "none, additive, dot, general"),
    (["seq2seq.model.attention=dot"], "bidirectional"),
    (["seq2seq.model.attention=none", "seq2seq.model.input_feeding=true"], "input_feeding"),
    (["seq2seq.model.teacher_forcing=1.5"], "teacher_forcing"),
    (["seq2seq.model.decoding.beam=0"], "decoding.beam"),
    (["seq2seq.tokenizer.target.kind=char"], "word, bpe"),
    (["seq2seq.grid.attention=[none,local]"], "grid.attention"),
    (["seq2seq.monitor=val_acc"], "val_bleu, val_loss"),
])
def test_translation_settings_are_validated(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(family_view(with_values(overrides), "seq2seq"))


def test_queued_dvc_experiments_track_into_the_real_repository(tmp_path, monkeypatch):
    """In a queued `dvc exp run` the stage runs in a temporary copy; DVC_ROOT names the real repository,
    where a relative SQLite tracking URI and artifact folder must point (not into the copy)."""
    params = tmp_path / "params.yaml"
    OmegaConf.save(with_values([]), params)
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
    (["seq2seq.model.output_layer=sampled"], "output_layer"),
    (["seq2seq.model.output_layer=adaptive", "seq2seq.model.label_smoothing=0.1"], "label_smoothing"),
    (["seq2seq.model.output_layer=adaptive", "seq2seq.model.adaptive_cutoffs=[3000,1000]"], "adaptive_cutoffs"),
    (["seq2seq.model.output_layer=adaptive", "seq2seq.model.adaptive_cutoffs=[6000]"], "adaptive_cutoffs"),
])
def test_translation_output_layer_options_are_checked(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate(family_view(with_values(overrides), "seq2seq"))
    validate(family_view(with_values(["seq2seq.model.output_layer=adaptive"]), "seq2seq"))


def test_family_view_of_an_unresolved_hydra_job_config_resolves_the_subtree_references():
    """A Hydra job hands over its config unresolved; `family=seq2seq` must still resolve
    tracking.experiment_name, which refers to ${..data.name} inside the subtree (the interactive CLI failed on it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        raw = hydra_compose(config_name="config", overrides=["family=seq2seq"])
    cfg = family_view(raw)
    assert cfg.family == "seq2seq" and cfg.tracking.experiment_name == "rnnlab-seq2seq-anki_spa_eng"
    validate(cfg)
