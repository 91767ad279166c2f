"""Configuration: composition from conf/, validation, and the two ways a stage script starts.

Interactive (`python pipelines/train.py model.cell=gru`, `-m` multiruns): Hydra composes `conf/`.
Under DVC (`python pipelines/train.py --params params.yaml model.cell=gru`): the committed
`params.yaml` (which carries any `dvc exp run -S` overrides) is loaded and the stage's own
overrides (the matrix item) are applied on top as a dotlist.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import ConfigError, RnnlabError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"

CELLS = ("rnn", "lstm", "gru")
POOLINGS = ("last", "mean", "max", "attention")
EMBEDDING_MODES = ("frozen", "finetune", "random")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")
MONITORS = {"val_acc": "max", "val_f1": "max", "val_loss": "min", "val_bleu": "max"}
TASK_MONITORS = {"classify": ("val_acc", "val_f1", "val_loss"), "translate": ("val_bleu", "val_loss")}
SOURCES = ("package", "hub", "local")
SCHEDULERS = ("none", "cosine")
ATTENTIONS = ("none", "additive", "dot", "general")
TOKENIZER_KINDS = ("word", "bpe")
# Tasks whose configuration groups live in a subtree of the root config (conf/<task>/default.yaml);
# the root groups themselves are the classification task's.
SUBTREE_TASKS = ("translate",)
TASKS = ("classify", *SUBTREE_TASKS)


def compose(overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> DictConfig:
    """Compose `conf/` exactly as DVC's Hydra integration does (resolved, without the hydra node)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(conf_dir), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    OmegaConf.resolve(cfg)
    return cfg


def dump_params(path: Path, overrides: list[str] | None = None, conf_dir: Path = CONF_DIR) -> None:
    """Write params.yaml with DVC's own composition function, so both always agree."""
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(path, str(conf_dir), None, "config", str(PROJECT_ROOT), list(overrides or []))


def task_config(cfg: DictConfig, task: str | None = None) -> DictConfig:
    """The configuration one task runs with: for a subtree task (translate), the root config with
    every group of `cfg.<task>` replacing the root's group of the same name (tracking is merged);
    for classify, the root without the subtrees. `task` defaults to `cfg.task.name`."""
    task = task or cfg.task.name
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is not supported. Allowed tasks: {', '.join(TASKS)}")
    # Resolved first: a root value may interpolate the subtree (tracking.experiment_name of a Hydra job
    # refers to ${translate.task.name}), and the subtree is dropped below.
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    base = {k: v for k, v in cfg.items() if k not in SUBTREE_TASKS}
    out = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(base)))
    if task in SUBTREE_TASKS:
        if task not in cfg:
            raise ConfigError(f"the config has no `{task}` section; add `- {task}: default` to conf/config.yaml")
        for key, value in cfg[task].items():
            if key == "tracking":
                out.tracking = OmegaConf.merge(out.tracking, value)
            else:
                out[key] = OmegaConf.to_container(value) if isinstance(value, DictConfig) else value
    return out


def load_params(path: str | Path, dotlist: list[str]) -> DictConfig:
    """Load a composed params.yaml and apply `key=value` overrides (matrix items) on top.

    `task=NAME` selects the task (as on the Hydra command line); other keys are paths in the file,
    e.g. `translate.model.cell=gru`. Returns the task's configuration (see `task_config`).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist. It is composed from conf/: run `make params` "
            "(or `dvc exp run`, which composes it) before `dvc repro`."
        )
    cfg = OmegaConf.load(path)
    task = None
    for item in dotlist:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        if key == "task":
            task = value
            continue
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"override {item!r}: key {key!r} does not exist in {path}")
        OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
    return _shared_tracking(task_config(cfg, task))


def _shared_tracking(cfg: DictConfig) -> DictConfig:
    """Queued `dvc exp run`s execute in a temporary copy of the repository (.dvc/tmp/exps/...); a
    relative SQLite tracking URI or artifact folder would then land in that copy and vanish with it.
    DVC names the real repository in DVC_ROOT: relative tracking paths are anchored there."""
    root = os.environ.get("DVC_ROOT")
    if not root or Path(root).resolve() == Path.cwd().resolve() or "tracking" not in cfg:
        return cfg
    uri = str(cfg.tracking.tracking_uri)
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        cfg.tracking.tracking_uri = prefix + str(Path(root).resolve() / uri[len(prefix):])
    location = str(cfg.tracking.artifact_location)
    if "://" not in location and not Path(location).is_absolute():
        cfg.tracking.artifact_location = str(Path(root).resolve() / location)
    return cfg


def _check_choice(cfg: DictConfig, key: str, allowed: tuple[str, ...] | dict) -> None:
    value = OmegaConf.select(cfg, key)
    if value not in allowed:
        raise ConfigError(
            f"{key}={value!r} is not supported. Allowed values: {', '.join(map(str, allowed))}. "
            f"Fix it with e.g. `{key}={next(iter(allowed))}`."
        )


def _check_range(cfg: DictConfig, key: str, lo: float, hi: float, kind: type = float) -> None:
    value = OmegaConf.select(cfg, key)
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
    if not ok_type or not (lo <= value <= hi):
        raise ConfigError(
            f"{key}={value!r} is out of range: expected {kind.__name__} in [{lo}, {hi}]."
        )


def _check_tokenizer(cfg: DictConfig, key: str) -> None:
    _check_choice(cfg, f"{key}.kind", TOKENIZER_KINDS)
    _check_range(cfg, f"{key}.max_length", 1, 100000, int)
    _check_range(cfg, f"{key}.min_frequency", 1, 10**9, int)
    _check_range(cfg, f"{key}.max_vocab_size", 3, 10**8, int)


def _check_grid(cfg: DictConfig, axis: str, allowed: tuple[str, ...]) -> None:
    for value in cfg.grid[axis]:
        if value not in allowed:
            raise ConfigError(f"grid.{axis} contains {value!r}; allowed: {', '.join(allowed)}")


def _check_optional_range(cfg: DictConfig, key: str, lo: float, hi: float, kind: type = float) -> None:
    if OmegaConf.select(cfg, key) is not None:
        _check_range(cfg, key, lo, hi, kind)


def validate(cfg: DictConfig) -> None:
    """Reject unknown names and out-of-range values before any work starts."""
    _check_choice(cfg, "task.name", TASKS)
    _check_choice(cfg, "task.monitor", TASK_MONITORS[cfg.task.name])
    _check_choice(cfg, "data.source", SOURCES)
    _check_choice(cfg, "embeddings.source", ("package", "local"))
    _check_choice(cfg, "model.cell", CELLS)
    _check_choice(cfg, "model.embedding_mode", EMBEDDING_MODES)
    _check_choice(cfg, "trainer.precision", PRECISIONS)
    _check_choice(cfg, "optim.scheduler", SCHEDULERS)
    _check_grid(cfg, "cell", CELLS)
    _check_range(cfg, "model.hidden_size", 1, 8192, int)
    _check_range(cfg, "model.dropout", 0.0, 0.95)
    _check_range(cfg, "optim.lr", 1e-7, 10.0)
    _check_range(cfg, "optim.embedding_lr", 0.0, 10.0)
    _check_range(cfg, "optim.weight_decay", 0.0, 1.0)
    _check_range(cfg, "optim.batch_size", 1, 65536, int)
    _check_range(cfg, "trainer.max_epochs", 1, 10000, int)
    _check_range(cfg, "seed", 0, 2**32 - 1, int)
    _check_range(cfg, "data.split.seed", 0, 2**32 - 1, int)
    _check_range(cfg, "tracking.retries", 0, 100, int)
    _check_range(cfg, "tracking.retry_seconds", 0.0, 600.0)
    _check_range(cfg, "trainer.devices", 1, 4096, int)
    _check_range(cfg, "trainer.num_nodes", 1, 4096, int)
    _check_optional_range(cfg, "trainer.gradient_clip_val", 0.0, 1e6)
    if cfg.task.name == "classify":
        _check_choice(cfg, "model.pooling", POOLINGS)
        _check_grid(cfg, "pooling", POOLINGS)
        _check_range(cfg, "model.num_layers", 1, 16, int)
        _check_range(cfg, "model.embedding_dropout", 0.0, 0.95)
        _check_range(cfg, "model.word_dropout", 0.0, 0.95)
        _check_range(cfg, "data.train_epochs", 1, 10000, int)
        _check_tokenizer(cfg, "tokenizer")
        return
    _check_choice(cfg, "model.attention", ATTENTIONS)
    _check_grid(cfg, "attention", ATTENTIONS)
    if cfg.model.input_feeding and cfg.model.attention == "none":
        raise ConfigError("model.input_feeding=true needs attention (it feeds the attentional vector); "
                          "set model.attention to additive, dot or general, or input_feeding=false")
    if cfg.model.attention == "dot" and cfg.model.bidirectional:
        raise ConfigError("model.attention=dot scores decoder states (hidden_size) against encoder outputs, "
                          "which are 2*hidden_size wide when model.bidirectional=true. Use attention=general "
                          "(a learned projection) or additive, or set model.bidirectional=false")
    _check_range(cfg, "model.encoder_layers", 1, 16, int)
    _check_range(cfg, "model.decoder_layers", 1, 16, int)
    _check_range(cfg, "model.tgt_embedding_dim", 1, 8192, int)
    _check_range(cfg, "model.teacher_forcing", 0.0, 1.0)
    _check_optional_range(cfg, "model.teacher_forcing_final", 0.0, 1.0)
    _check_range(cfg, "model.label_smoothing", 0.0, 0.9)
    _check_output_layer(cfg)
    _check_range(cfg, "model.decoding.beam", 1, 256, int)
    _check_range(cfg, "model.decoding.length_penalty", 0.0, 10.0)
    _check_range(cfg, "model.decoding.max_length", 1, 10000, int)
    _check_range(cfg, "model.decoding.max_len_a", 0.0, 100.0)
    _check_range(cfg, "model.decoding.max_len_b", 0, 10000, int)
    _check_optional_range(cfg, "data.max_source_words", 1, 10**6, int)
    _check_optional_range(cfg, "data.max_train_pairs", 1, 10**9, int)
    _check_optional_range(cfg, "data.max_eval_sources", 1, 10**9, int)
    _check_tokenizer(cfg, "tokenizer.source")
    _check_tokenizer(cfg, "tokenizer.target")


def _check_output_layer(cfg: DictConfig) -> None:
    from rnnlab.models.seq2seq import OUTPUT_LAYERS

    model = cfg.model
    layer = model.get("output_layer", "full")
    if layer not in OUTPUT_LAYERS:
        raise ConfigError(f"model.output_layer={layer!r} is not supported; allowed: {', '.join(OUTPUT_LAYERS)}")
    if layer != "adaptive":
        return
    if float(model.label_smoothing) > 0:
        raise ConfigError(f"model.output_layer=adaptive with model.label_smoothing={model.label_smoothing}: label "
                          "smoothing needs every word's probability, which removes the adaptive softmax's speed-up. "
                          "Set model.label_smoothing=0 or model.output_layer=full")
    cutoffs = list(model.get("adaptive_cutoffs") or [])
    vocab = int(cfg.tokenizer.target.max_vocab_size)
    if (not cutoffs or not all(isinstance(c, int) and not isinstance(c, bool) for c in cutoffs)
            or cutoffs != sorted(set(cutoffs)) or cutoffs[0] < 1 or cutoffs[-1] >= vocab):
        raise ConfigError(f"model.adaptive_cutoffs={cutoffs}: give increasing, unique whole numbers between 1 and "
                          f"tokenizer.target.max_vocab_size - 1 ({vocab - 1}), e.g. [2000] or [1000,3000]")


def variant_name(cfg: DictConfig) -> str:
    """Name of a model variant from its grid coordinates, e.g. `lstm-attention`, `gru-additive`."""
    if cfg.task.name == "translate":
        return f"{cfg.model.cell}-{cfg.model.attention}"
    return f"{cfg.model.cell}-{cfg.model.pooling}"


def grid_variants(cfg: DictConfig) -> list[str]:
    """Every variant of the grid that `dvc repro` trains, in dvc.yaml's matrix order."""
    second = "attention" if cfg.task.name == "translate" else "pooling"
    return [f"{cell}-{other}" for cell in cfg.grid.cell for other in cfg.grid[second]]


def run_stage(run: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Validate and run a stage; user-fixable errors become a clear message and exit code 2."""
    try:
        validate(cfg)
        return run(cfg)
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def cli(run: Callable[[DictConfig], Any], stage: str) -> None:
    """Entry point of a stage script: `--params FILE [key=value ...]` under DVC, Hydra otherwise."""
    argv = sys.argv[1:]
    if argv and argv[0] == "--params":
        if len(argv) < 2:
            print("error: --params needs a file, e.g. --params params.yaml", file=sys.stderr)
            raise SystemExit(2)
        try:
            cfg = load_params(argv[1], argv[2:])
        except RnnlabError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        run_stage(run, cfg)
        return

    import hydra

    def task(cfg: DictConfig) -> Any:
        try:
            cfg = task_config(cfg)
        except RnnlabError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        return run_stage(run, cfg)

    sys.argv = [sys.argv[0], *argv, f"hydra.job.name={stage}"]
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(task)()
