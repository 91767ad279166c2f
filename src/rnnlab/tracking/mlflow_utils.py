"""MLflow: logger construction, run tags, and re-opening a training run from later stages."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from omegaconf import DictConfig, OmegaConf

from rnnlab.config import PROJECT_ROOT
from rnnlab.errors import RnnlabError

T = TypeVar("T")
# Set by the Hydra sweep callback (rnnlab.tracking.hydra_callbacks) for the jobs of a multirun: the parent
# run each job's run is nested under, and the experiment it lives in.
PARENT_ENV = "RNNLAB_MLFLOW_PARENT_RUN_ID"
EXPERIMENT_ENV = "RNNLAB_MLFLOW_PARENT_EXPERIMENT"
# MLflow's own HTTP client retries for minutes by default; rnnlab retries every call itself (below),
# with the `tracking.retries` / `tracking.retry_seconds` policy, so a user's explicit setting wins.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class TrackingError(RnnlabError):
    """The MLflow backend stayed unreachable or locked through every retry."""


def retry(call: Callable[[], T], what: str, tracking_uri: str, retries: int = 4, wait: float = 1.0) -> T:
    """`call()`, retried `retries` times with exponential backoff (wait, 2*wait, 4*wait, ...) on any
    error (a locked SQLite file, a server that is down or restarting); then a TrackingError."""
    for attempt in range(retries + 1):
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - every backend error is retried, then reported
            last = err
            if attempt < retries:
                time.sleep(wait * 2**attempt)
    raise TrackingError(
        f"MLflow backend {tracking_uri} failed to {what} after {retries + 1} attempts "
        f"(last error: {type(last).__name__}: {str(last).splitlines()[0] if str(last) else ''}). Check that "
        "the server is running or the SQLite file is not held by another program, or point "
        "tracking.tracking_uri elsewhere; tracking.retries and tracking.retry_seconds set the patience.")


_READY_STORES: set[str] = set()


def ensure_store(tracking_uri: str) -> None:
    """Create a new SQLite tracking store under an exclusive lock. MLflow initialises a fresh database
    lazily in every process that opens it, and two processes doing that at once (two runs started
    together on a new mlruns.db) can fail with 'table _alembic_tmp_metrics already exists' or a missing
    schema version; behind this lock the second process finds the tables complete."""
    uri = str(tracking_uri)
    if uri in _READY_STORES or not uri.startswith("sqlite:///"):
        return
    import fcntl
    import hashlib
    import tempfile

    from mlflow.tracking import MlflowClient

    path = Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"rnnlab-mlflow-init-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(uri)


def git_commit() -> str:
    """HEAD commit, suffixed with -dirty when tracked files changed; 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def flatten(cfg: DictConfig | dict) -> dict[str, Any]:
    """Resolved config as flat `a.b.c` keys (MLflow params)."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}" if prefix else str(key))
        else:
            out[prefix] = node

    walk(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg, "")
    return out


def run_tags(cfg: DictConfig, overrides: list[str]) -> dict[str, str]:
    import torch

    tags = {
        "family": cfg.family, "dataset": cfg.data.name, "seed": str(cfg.seed),
        "git_commit": git_commit(), "overrides": " ".join(overrides) or "(none)",
        "torch_version": torch.__version__, "host_python": platform.python_version(),
        "launcher": "dvc" if os.environ.get("DVC_STAGE") or "--params" in overrides else "hydra",
    }
    for key in ("cell", "bidirectional", "embedding_mode", *cfg.grid):  # the grid's axes, and common model keys
        if OmegaConf.select(cfg, f"model.{key}") is not None:
            tags[key] = str(cfg.model[key])
    comparison = OmegaConf.select(cfg, "comparison.name", default=None)
    if comparison:  # launched by an `experiment=` comparison (conf/experiment/)
        tags["comparison"] = str(comparison)
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "neon", "asimd")


def cpu_info() -> dict[str, str]:
    """The CPU's model name, the SIMD level PyTorch's kernels use (ATen's CPU capability) and the vector
    instruction sets present: what decides float rounding, hence what "bit-identical" is promised across."""
    import torch

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = "unknown"
    return {"cpu_model": model, "cpu_capability": capability,
            "cpu_flags": " ".join(f for f in SIMD_FLAGS if f in flags) or "none found"}


def system_info(accelerator: str = "cpu") -> dict[str, str]:
    """Where a run ran: logged as `system.*` params so runs from different machines are told apart."""
    import torch

    if accelerator in ("auto", "gpu", "cuda"):  # what Lightning will pick
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    info = {
        "system.torch": torch.__version__, "system.python": platform.python_version(),
        "system.platform": platform.platform(), "system.cpu_count": str(os.cpu_count()),
        "system.torch_threads": str(torch.get_num_threads()),
        "system.accelerator": accelerator,
        "system.cuda_available": str(torch.cuda.is_available()),
        **{f"system.{k}": v for k, v in cpu_info().items()},
    }
    if torch.cuda.is_available():
        info["system.device"] = torch.cuda.get_device_name(0)
        info["system.cuda"] = str(torch.version.cuda)
        info["system.cudnn"] = str(torch.backends.cudnn.version())
        info["system.gpu_count"] = str(torch.cuda.device_count())
    else:
        info["system.device"] = platform.processor() or platform.machine()
    return info


def log_model_folder(tracking_uri: str, run_id: str, model_dir: Path, name: str = "model") -> str:
    """Log a trained model folder into the run as an MLflow pyfunc "model from code"
    (rnnlab/tracking/pyfunc_model.py), with a signature and an input example: `mlflow.pyfunc.load_model(uri)`
    runs that file and loads the weights with weights_only=True, so nothing is unpickled. Returns the model
    URI, for the registry."""
    import mlflow
    import torch

    from rnnlab.predict import model_family
    from rnnlab.tracking.serving import input_example, signature

    family = model_family(model_dir)
    # Logging copies the folder and reads the model back: MLflow draws a per-file progress bar for that copy
    # into every training's log unless told not to (a user who sets the variable keeps their choice).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        logged = mlflow.pyfunc.log_model(
            name=name, python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model_dir": str(model_dir)},
            # texts in, one answer per text out, the family's predict options as params (tracking/serving.py);
            # MLflow checks at logging that the example is answered as a served model would answer it
            signature=signature(family), input_example=input_example(family),
            # The requirements are known; MLflow's own inference would import-scan the environment.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "rnnlab"])
    return logged.model_uri


def set_champion(tracking_uri: str, registered_name: str, model_uri: str, run_id: str,
                 description: str, alias: str = "champion") -> str:
    """Register `model_uri` under `registered_name` (re-using the version if that run's model is already
    registered, so a re-run of the report stage adds no duplicate) and point `alias` at it. Returns the version."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    # The registry lives in the same store as the runs. MLflow resolves a `models:/` source through the
    # process-wide URIs, whose default would be ./mlflow.db, so both are set, not only the client's.
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.get_registered_model(registered_name)
    except MlflowException:
        client.create_registered_model(registered_name, description="rnnlab: best variant of the "
                                       "committed grid by validation score; alias 'champion'")
    existing = [v for v in client.search_model_versions(f"name='{registered_name}'")
                if v.run_id == run_id and v.source == model_uri]
    version = existing[0] if existing else client.create_model_version(
        registered_name, model_uri, run_id=run_id, description=description)
    client.set_registered_model_alias(registered_name, alias, version.version)
    return str(version.version)


def artifact_uri(cfg: DictConfig) -> str:
    return Path(cfg.tracking.artifact_location).resolve().as_uri()


def retry_policy(cfg: DictConfig) -> dict[str, Any]:
    return {"tracking_uri": str(cfg.tracking.tracking_uri), "retries": int(cfg.tracking.retries),
            "wait": float(cfg.tracking.retry_seconds)}


def make_logger(cfg: DictConfig, run_name: str, tags: dict[str, str], run_id: str | None = None):
    """An MLFlowLogger that retries (RetryingMLFlowLogger); inside a Hydra multirun the run is a child of
    the sweep's parent run (rnnlab.tracking.hydra_callbacks) when both are in the same experiment.
    `run_id` continues an existing run (a resumed training)."""
    parent = os.environ.get(PARENT_ENV)
    if parent:
        same_experiment = os.environ.get(EXPERIMENT_ENV) == cfg.tracking.experiment_name
        tags = {**tags, ("mlflow.parentRunId" if same_experiment else "sweep_parent_run"): parent}

    policy = retry_policy(cfg)
    retry(lambda: ensure_store(cfg.tracking.tracking_uri), "open the tracking store", **policy)
    return _logger_class()(
        policy,
        experiment_name=cfg.tracking.experiment_name,
        run_name=run_name,
        tracking_uri=cfg.tracking.tracking_uri,
        tags=tags,
        artifact_location=artifact_uri(cfg),
        log_model=False,
        run_id=run_id,
    )


def _logger_class():
    from pytorch_lightning.loggers import MLFlowLogger

    class RetryingMLFlowLogger(MLFlowLogger):
        """Creating the run is retried and then fails with a clear TrackingError (nothing has been
        trained yet). Every later call (metrics, params, artifacts, the final status) is retried and
        then only warned about and counted in `failed_calls`: the training itself is never lost,
        since its history and metrics also go to the stage's own outputs."""

        def __init__(self, policy: dict[str, Any], **kwargs: Any):
            super().__init__(**kwargs)
            self.policy, self.failed_calls = policy, 0

        @property
        def experiment(self):
            return retry(lambda: MLFlowLogger.experiment.fget(self), "create or open the run", **self.policy)

        def safely(self, what: str, call: Callable[[], Any]) -> Any:
            """Run a tracking call with retries; after the last one, warn and go on."""
            try:
                return retry(call, what, **self.policy)
            except TrackingError as err:
                self.failed_calls += 1
                print(f"warning: {err} The training goes on; its results are in the stage outputs.",
                      file=sys.stderr, flush=True)
                return None

        def log_metrics(self, metrics, step=None) -> None:
            self.safely("log metrics", lambda: MLFlowLogger.log_metrics(self, metrics, step))

        def log_hyperparams(self, params) -> None:
            self.safely("log parameters", lambda: MLFlowLogger.log_hyperparams(self, params))

        def finalize(self, status: str = "success") -> None:
            self.safely("end the run", lambda: MLFlowLogger.finalize(self, status))

    return RetryingMLFlowLogger


def log_to_run(tracking_uri: str, run_id: str, metrics: dict[str, float] | None = None,
               artifacts: list[Path] | None = None, artifact_path: str | None = None,
               retries: int = 4, wait: float = 1.0) -> bool:
    """Add metrics/artifacts to an existing (finished) run, e.g. test metrics from evaluate. Retried;
    when the backend stays down a warning is printed and False returned (the stage's own metrics
    file is the record, so the stage does not fail)."""
    from mlflow.tracking import MlflowClient

    def log() -> None:
        client = MlflowClient(tracking_uri=tracking_uri)
        for key, value in (metrics or {}).items():
            client.log_metric(run_id, key, float(value))
        for path in artifacts or []:
            client.log_artifact(run_id, str(path), artifact_path)

    try:
        retry(log, f"add results to run {run_id}", tracking_uri, retries, wait)
        return True
    except TrackingError as err:
        print(f"warning: {err} The results are in the stage outputs.", file=sys.stderr, flush=True)
        return False
