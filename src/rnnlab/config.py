"""Configuration: composition from conf/, a family's view of it, the schemas of the shared groups,
validation, and the two ways a stage script starts.

The composed config holds one subtree per task family (`<family>: {data, tokenizer, embeddings, model,
optim, trainer, tracking, grid, monitor}`, conf/<family>/default.yaml) beside the shared root keys
(`family`, `seed`, `paths`, `tracking`, `out_dir`, `checkpoint_dir`). A key has one spelling everywhere:
`<family>.model.cell` on the Hydra command line, in `dvc exp run -S`, in params.yaml, in
conf/experiment/ and in the MLflow params of a run (see `public_config`).

The code of a stage works on a *family view* (`family_view`): the root keys with the family's subtree
lifted to the top (`cfg.model.cell`, `cfg.data.name`), so shared code reads every family alike.

Interactive (`python pipelines/train.py F.model.cell=gru`, F a family; `-m` multiruns): Hydra composes
`conf/`. Under DVC (`python pipelines/train.py --params params.yaml family=F F.model.cell=gru`):
the committed `params.yaml` (which carries any `dvc exp run -S` overrides) is loaded and the stage's
own overrides (the matrix item) are applied on top as a dotlist.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import ConfigError, RnnlabError, user_os_error
from rnnlab.models.choices import CELL_IMPLS, CELL_VARIANTS, check_cell

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"

# Root keys shared by every family; everything else of a family view comes from the family's subtree.
ROOT_KEYS = ("family", "seed", "paths", "tracking", "out_dir", "checkpoint_dir", "comparison", "curves_dir")
# Root nodes that configure a study stage (pipelines/long_range.py reads its node from params.yaml), not a family.
STUDY_KEYS = ("long_range",)
# Keys of a family's own `tracking` node, merged into the root `tracking` in the view.
FAMILY_TRACKING_KEYS = ("experiment_name", "registered_model")


# --------------------------------------------------------------------------- schemas


@dataclass(frozen=True)
class Rule:
    """What one config value may be: `choices`, or a number of `kind` in [lo, hi]; None allowed if optional."""

    choices: tuple | None = None
    kind: type | None = None
    lo: float = 0
    hi: float = 0
    optional: bool = False

    def check(self, key: str, value: Any) -> None:
        if value is None and self.optional:
            return
        if self.choices is not None:
            if value not in self.choices:
                raise ConfigError(f"{key}={value!r} is not supported. Allowed values: "
                                  f"{', '.join(map(str, self.choices))}. Fix it with e.g. `{key}={self.choices[0]}`.")
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or not self.lo <= value <= self.hi:
            raise ConfigError(f"{key}={value!r} is out of range: expected {self.kind.__name__} in [{self.lo}, {self.hi}]"
                              + (" (or null)." if self.optional else "."))


def choice(*values: Any) -> Rule:
    return Rule(choices=tuple(values))


def int_in(lo: int, hi: int, optional: bool = False) -> Rule:
    return Rule(kind=int, lo=lo, hi=hi, optional=optional)


def number_in(lo: float, hi: float, optional: bool = False) -> Rule:
    return Rule(kind=float, lo=lo, hi=hi, optional=optional)


Schema = dict[str, Rule]
SEED = int_in(0, 2**32 - 1)
CELLS = ("rnn", "lstm", "gru")
EMBEDDING_MODES = ("frozen", "finetune", "random")
# The shared groups: one schema each (a family adds the schema of its `model` group).
ROOT_SCHEMA: Schema = {"seed": SEED}
# The recurrent cell of every family's model: which cell, computed by which implementation (PyTorch's fused
# kernels or rnnlab.models.cells' gate equations), which variant of its equations, and the LSTM forget-gate
# bias at initialisation (null: PyTorch's default). Families merge it into their model_schema; validate()
# checks the combination (rnnlab.models.choices.check_cell).
CELL_SCHEMA: Schema = {"cell": choice(*CELLS), "cell_impl": choice(*CELL_IMPLS),
                       "cell_variant": choice(*dict.fromkeys(v for vs in CELL_VARIANTS.values() for v in vs)),
                       "forget_bias": number_in(-10.0, 10.0, optional=True)}
TRACKING_SCHEMA: Schema = {"retries": int_in(0, 100), "retry_seconds": number_in(0.0, 600.0)}
DATA_SCHEMA: Schema = {"source": choice("package", "hub", "local"), "split.seed": SEED,
                       "train_epochs": int_in(1, 10000), "max_examples_per_split": int_in(1, 10**9, optional=True)}
EMBEDDINGS_SCHEMA: Schema = {"source": choice("package", "local")}
TOKENIZER_SCHEMA: Schema = {"kind": choice("word", "bpe"), "max_length": int_in(1, 100000),
                            "min_frequency": int_in(1, 10**9), "max_vocab_size": int_in(3, 10**8)}
OPTIM_SCHEMA: Schema = {"scheduler": choice("none", "cosine"), "lr": number_in(1e-7, 10.0),
                        "embedding_lr": number_in(0.0, 10.0), "weight_decay": number_in(0.0, 1.0),
                        "batch_size": int_in(1, 65536)}
TRAINER_SCHEMA: Schema = {"precision": choice("32-true", "32", "bf16-mixed", "16-mixed"),
                          "max_epochs": int_in(1, 10000), "min_epochs": int_in(0, 10000),
                          "patience": int_in(0, 10000), "devices": int_in(1, 4096), "num_nodes": int_in(1, 4096),
                          "gradient_clip_val": number_in(0.0, 1e6, optional=True),
                          "checkpoint_every_n_steps": int_in(0, 10**9, optional=True)}


TRACKING_URI_FORMS = ("sqlite:///<file>.db", "http://<host>:<port>", "https://<host>", "postgresql://...",
                      "mysql://...", "databricks")


def check_tracking_uri(uri: str) -> None:
    """An MLflow tracking URI rnnlab can use: a database or a tracking server (MLflow 3 has no plain-folder
    store for a new project; a bare path would be taken as one)."""
    import re

    if re.match(r"^(sqlite:///.+|https?://[^/\s]+.*|(postgresql|mysql|mssql)(\+\w+)?://.+|databricks(://.*)?)$", uri):
        return
    raise ConfigError(f"tracking.tracking_uri={uri!r} is not a tracking store rnnlab can use. Allowed forms: "
                      f"{', '.join(TRACKING_URI_FORMS)}. Fix it with e.g. `tracking.tracking_uri=sqlite:///mlruns.db` "
                      "(the default) or the address of an `mlflow server`.")


def check_group(node: DictConfig, prefix: str, schema: Schema) -> None:
    """Check every key of `schema` in `node` (keys may be dotted); errors name `prefix.key`."""
    for key, rule in schema.items():
        rule.check(f"{prefix}.{key}" if prefix else key, OmegaConf.select(node, key))


# --------------------------------------------------------------------------- composition and views


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


def family_view(cfg: DictConfig, family: str | None = None) -> DictConfig:
    """The configuration one family runs with: the root keys, with the family's subtree lifted to the top
    (its `tracking` merged into the root's) and the other families' subtrees left out. `family` defaults
    to `cfg.family`."""
    from rnnlab import tasks

    family = family or cfg.get("family")
    tasks.get(family)  # a clear error for an unknown name
    if family not in cfg:
        raise ConfigError(f"the config has no `{family}` section; add `- {family}: default` to the defaults "
                          "of conf/config.yaml")
    # Resolved first: values interpolate across the tree, and the other subtrees are dropped below.
    full = OmegaConf.to_container(cfg, resolve=True)
    stray = [k for k in full if k not in ROOT_KEYS and k not in tasks.names() and k not in STUDY_KEYS]
    if stray:  # e.g. `+gate_arm=lstm`: a config group chosen without a package lands at the root, unread
        raise ConfigError(
            f"the config has root key(s) {', '.join(stray)} that no family reads. A config group chosen with "
            f"`+group=option` lands at the root unless it names where it goes, e.g. `+gate_arm@{family}.model=lstm`; "
            f"the root holds only {', '.join(ROOT_KEYS)}, the families ({', '.join(tasks.names())}) and the "
            f"studies' settings ({', '.join(STUDY_KEYS)})")
    # Only the shared root keys and this family's subtree: the studies' settings are no run's parameters.
    view = {k: v for k, v in full.items() if k in ROOT_KEYS}
    for key, value in full[family].items():
        if key == "tracking":
            view["tracking"] = {**view.get("tracking", {}), **value}
        elif key in ROOT_KEYS:
            raise ConfigError(f"{family}.{key} shadows the shared root key `{key}`; rename it")
        else:
            view[key] = value
    view["family"] = family
    return OmegaConf.create(view)


def public_config(view: DictConfig) -> dict:
    """A family view back in the public spelling (`<family>.model.cell`, root `seed`): what MLflow params,
    a model's config.yaml and the error messages show, the same keys as params.yaml and the command line."""
    values = OmegaConf.to_container(view, resolve=True)
    family = values["family"]
    root = {k: values[k] for k in ROOT_KEYS if k in values}
    own = {k: v for k, v in values.items() if k not in ROOT_KEYS}
    tracking = root.get("tracking") or {}
    if any(k in tracking for k in FAMILY_TRACKING_KEYS):
        own["tracking"] = {k: tracking[k] for k in FAMILY_TRACKING_KEYS if k in tracking}
        root["tracking"] = {k: v for k, v in tracking.items() if k not in FAMILY_TRACKING_KEYS}
    return {**root, family: own}


def load_params(path: str | Path, dotlist: list[str]) -> DictConfig:
    """Load a composed params.yaml and apply `key=value` overrides (matrix items) on top, in the public
    spelling (`family=F`, `F.model.cell=gru`, `out_dir=...`). Returns the family view."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist. It is composed from conf/: run `make params` "
            "(or `dvc exp run`, which composes it) before `dvc repro`."
        )
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # noqa: BLE001 - yaml's scanner/parser errors and OmegaConf's: all unreadable
        where = " ".join(str(err).split())[:300]
        raise ConfigError(f"{path} is not valid YAML ({type(err).__name__}: {where}). It is composed from conf/, "
                          "never edited by hand: run `make params` to write it again.") from None
    if not isinstance(cfg, DictConfig) or "family" not in cfg:
        raise ConfigError(f"{path} is not a composed rnnlab config (no `family` key). Run `make params` to write it.")
    for item in dotlist:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, value = item.split("=", 1)
        if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
            raise ConfigError(f"override {item!r}: key {key!r} does not exist in {path}")
        OmegaConf.update(cfg, key, OmegaConf.from_dotlist([f"v={value}"]).v, merge=True)
    return _shared_tracking(family_view(cfg))


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


# --------------------------------------------------------------------------- validation


def validate(cfg: DictConfig) -> None:
    """Reject unknown names and out-of-range values of a family view before any work starts."""
    from rnnlab import tasks

    family = tasks.get(cfg.family)
    name = cfg.family
    check_group(cfg, "", ROOT_SCHEMA)
    check_group(cfg.tracking, "tracking", TRACKING_SCHEMA)
    check_tracking_uri(str(cfg.tracking.tracking_uri))
    choice(*family.monitors).check(f"{name}.monitor", cfg.get("monitor"))
    missing = [k for k in family.data_keys if OmegaConf.select(cfg.data, k, default=None) is None]
    if missing:
        raise ConfigError(
            f"{name}.data ({cfg.data.get('name')}) is not a {name} data set: it has no {', '.join(missing)}. "
            f"{name} data sets: {', '.join(data_sets(family))}; pick one with e.g. "
            f"`data@{name}.data={(data_sets(family) or ['<name>'])[0]}`.")
    check_group(cfg.data, f"{name}.data", DATA_SCHEMA)
    if "embeddings" in cfg:
        check_group(cfg.embeddings, f"{name}.embeddings", EMBEDDINGS_SCHEMA)
    check_group(cfg.optim, f"{name}.optim", OPTIM_SCHEMA)
    check_group(cfg.trainer, f"{name}.trainer", TRAINER_SCHEMA)
    check_group(cfg.model, f"{name}.model", family.model_schema)
    if "cell_impl" in family.model_schema:
        check_cell(cfg.model.cell, cfg.model.cell_impl, cfg.model.cell_variant, f"{name}.model",
                   cfg.model.get("forget_bias"))
    for node in family.tokenizer_nodes:
        check_group(OmegaConf.select(cfg, node), f"{name}.{node}", TOKENIZER_SCHEMA)
    for axis, values in cfg.grid.items():
        if not OmegaConf.is_list(values) or len(values) == 0:
            raise ConfigError(f"{name}.grid.{axis}={values!r} must be a non-empty list of values, e.g. "
                              f"`{name}.grid.{axis}=[{values if isinstance(values, str) else '...'}]` (brackets).")
        rule = family.model_schema.get(axis)
        if rule is None or rule.choices is None:
            axes = [k for k, r in family.model_schema.items() if r.choices is not None]
            raise ConfigError(f"{name}.grid.{axis}: the grid's axes are model keys with named values; "
                              f"allowed axes: {', '.join(axes)}")
        for value in values:
            if value not in rule.choices:
                raise ConfigError(f"{name}.grid.{axis} contains {value!r}; allowed: {', '.join(map(str, rule.choices))}")
    family.validate(cfg)


def data_sets(family) -> list[str]:
    """The data sets of conf/data/ that a family can use (those holding its `data_keys`)."""
    names = []
    for path in sorted((CONF_DIR / "data").glob("*.yaml")):
        node = OmegaConf.load(path)
        if all(OmegaConf.select(node, k, default=None) is not None for k in family.data_keys):
            names.append(path.stem)
    return names


def variant_name(cfg: DictConfig) -> str:
    """Name of a model variant from its grid coordinates (the model keys the grid's axes name), e.g.
    `lstm-attention`, `gru-additive`."""
    return "-".join(str(cfg.model[axis]) for axis in cfg.grid)


def grid_variants(cfg: DictConfig) -> list[str]:
    """Every variant of the grid that `dvc repro` trains, in dvc.yaml's matrix order."""
    return ["-".join(map(str, point)) for point in itertools.product(*cfg.grid.values())]


# --------------------------------------------------------------------------- entry points


def run_stage(run: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Validate and run a stage; user-fixable errors become a clear message and exit code 2."""
    try:
        validate(cfg)
        return run(cfg)
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as err:  # a full disk, a read-only folder: one line too (nothing is half-written)
        message = user_os_error(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
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

    def job(cfg: DictConfig) -> Any:
        try:
            try:
                cfg = family_view(cfg)
            except RnnlabError as err:
                print(f"error: {err}", file=sys.stderr)
                raise SystemExit(2) from None
            return run_stage(run, cfg)
        except SystemExit as stop:
            if stop.code == 2:  # rejected before any work: the job folder holds only Hydra's own files
                _remove_unused_job_dir()
            raise

    # The run/sweep folder names end in this process's id (conf/config.yaml), so that two runs started in
    # the same second get two folders; inherited by a sweep's worker processes, which resolve the names too.
    os.environ["RNNLAB_RUN_TAG"] = str(os.getpid())
    sys.argv = [sys.argv[0], *argv, f"hydra.job.name={stage}"]
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(job)()


def _remove_unused_job_dir() -> None:
    """Delete the Hydra job folder of a rejected run when it holds nothing but Hydra's config copy and log."""
    import shutil

    from hydra.core.hydra_config import HydraConfig

    try:
        folder = Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, AttributeError):
        return
    if folder.is_dir() and all(p.name == ".hydra" or p.suffix == ".log" for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
