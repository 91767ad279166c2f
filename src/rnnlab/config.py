"""Configuration: composition from conf/, validation, and the two ways a stage script starts.

Interactive (`python pipelines/train.py model.cell=gru`, `-m` multiruns): Hydra composes `conf/`.
Under DVC (`python pipelines/train.py --params params.yaml model.cell=gru`): the committed
`params.yaml` (which carries any `dvc exp run -S` overrides) is loaded and the stage's own
overrides (the matrix item) are applied on top as a dotlist.
"""

from __future__ import annotations

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
MONITORS = {"val_acc": "max", "val_f1": "max", "val_loss": "min"}
SOURCES = ("package", "hub", "local")
SCHEDULERS = ("none", "cosine")


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


def load_params(path: str | Path, dotlist: list[str]) -> DictConfig:
    """Load a composed params.yaml and apply `key=value` overrides (matrix items) on top."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist. It is composed from conf/: run `make params` "
            "(or `dvc exp run`, which composes it) before `dvc repro`."
        )
    cfg = OmegaConf.load(path)
    for item in dotlist:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"override {item!r}: key {key!r} does not exist in {path}")
        OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
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


def validate(cfg: DictConfig) -> None:
    """Reject unknown names and out-of-range values before any work starts."""
    _check_choice(cfg, "data.source", SOURCES)
    _check_choice(cfg, "embeddings.source", ("package", "local"))
    _check_choice(cfg, "model.cell", CELLS)
    _check_choice(cfg, "model.pooling", POOLINGS)
    _check_choice(cfg, "model.embedding_mode", EMBEDDING_MODES)
    _check_choice(cfg, "task.monitor", MONITORS)
    _check_choice(cfg, "trainer.precision", PRECISIONS)
    _check_choice(cfg, "optim.scheduler", SCHEDULERS)
    for cell in cfg.grid.cell:
        if cell not in CELLS:
            raise ConfigError(f"grid.cell contains {cell!r}; allowed cells: {', '.join(CELLS)}")
    for pooling in cfg.grid.pooling:
        if pooling not in POOLINGS:
            raise ConfigError(
                f"grid.pooling contains {pooling!r}; allowed poolings: {', '.join(POOLINGS)}"
            )
    _check_range(cfg, "model.hidden_size", 1, 8192, int)
    _check_range(cfg, "model.num_layers", 1, 16, int)
    _check_range(cfg, "model.dropout", 0.0, 0.95)
    _check_range(cfg, "model.embedding_dropout", 0.0, 0.95)
    _check_range(cfg, "model.word_dropout", 0.0, 0.95)
    _check_range(cfg, "optim.lr", 1e-7, 10.0)
    _check_range(cfg, "optim.embedding_lr", 0.0, 10.0)
    _check_range(cfg, "optim.weight_decay", 0.0, 1.0)
    _check_range(cfg, "optim.batch_size", 1, 65536, int)
    _check_range(cfg, "trainer.max_epochs", 1, 10000, int)
    _check_range(cfg, "data.train_epochs", 1, 10000, int)
    _check_range(cfg, "tokenizer.max_length", 1, 100000, int)
    _check_range(cfg, "tokenizer.min_frequency", 1, 10**9, int)
    _check_range(cfg, "tokenizer.max_vocab_size", 3, 10**8, int)


def variant_name(cfg: DictConfig) -> str:
    """Name of a model variant from its grid coordinates, e.g. `lstm-attention`."""
    return f"{cfg.model.cell}-{cfg.model.pooling}"


def grid_variants(cfg: DictConfig) -> list[str]:
    """Every variant of the grid that `dvc repro` trains, in dvc.yaml's matrix order."""
    return [f"{cell}-{pooling}" for cell in cfg.grid.cell for pooling in cfg.grid.pooling]


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
        return run_stage(run, cfg)

    sys.argv = [sys.argv[0], *argv, f"hydra.job.name={stage}"]
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(task)()
