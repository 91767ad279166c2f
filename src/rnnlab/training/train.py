"""train(cfg): one Lightning training run of any task family, tracked in MLflow. The family (looked up in
the registry) builds the data, the LightningModule and what model.json records; everything else is shared.

Writes to out_dir (atomically): model.pt (weights), model.json (what is needed to rebuild and use
the model: family, config, vocabulary sizes, labels), the tokenizer file(s), train_summary.json
(history, timing, parameter count, MLflow run id) and config.yaml.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from rnnlab.config import public_config, variant_name
from rnnlab.errors import ConfigError, RnnlabError
from rnnlab.io import atomic_dir, save_torch, write_json


def _progress_bar(cfg: DictConfig) -> tuple[list, bool, bool]:
    """(callbacks, enable_progress_bar, print epoch lines): on a terminal a bar (epochs from 1, the monitored
    metric) with one line per finished epoch above it; elsewhere the lines alone."""
    mode = cfg.trainer.progress_bar
    use_bar = sys.stdout.isatty() if mode == "auto" else bool(mode)
    if use_bar:
        from rnnlab.training.callbacks import epoch_bar

        return [epoch_bar(str(cfg.monitor))], True, True
    return [], False, True


# Known noise of the pinned libraries, silenced at its source (by exact message), so that real warnings stand
# out: a deprecation inside Lightning's own code, its advertising tip, and its step-estimation notice.
NOISY_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"Checkpoint directory .* exists and is not empty")
NOISY_LOG_LINES = ("💡 Tip:", "Loading `train_dataloader` to estimate number of stepping batches")


class _DropNoise:
    """A logging filter dropping the records that start with one of NOISY_LOG_LINES."""

    def filter(self, record) -> bool:
        return not str(record.getMessage()).lstrip().startswith(NOISY_LOG_LINES)


def silence_known_noise() -> None:
    import logging

    for message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in log.filters):
            log.addFilter(_DropNoise())


class PrecisionError(ConfigError):
    """The requested trainer.precision cannot run this model on this machine."""


def _cpu_lstm_mixed_supported(dtype: torch.dtype) -> bool:
    """Whether this CPU runs an nn.LSTM under autocast to `dtype`. PyTorch's CPU LSTM kernel in reduced
    precision is oneDNN's, which needs AVX-512 (measured: fails on a 2-core AMD EPYC without it, while
    nn.RNN and nn.GRU run); probed with a 1-step LSTM rather than guessed from CPU flags."""
    probe = torch.nn.LSTM(2, 2, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=dtype):
            probe(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True


def check_precision(cfg: DictConfig, model: torch.nn.Module) -> None:
    """Refuse, before any MLflow run or output exists, a mixed precision that this CPU cannot run for the
    model's LSTM layers (instead of a oneDNN 'could not create a primitive descriptor' error mid-fit)."""
    precision = str(cfg.trainer.precision)
    if not precision.endswith("-mixed") or str(cfg.trainer.accelerator) not in ("cpu", "auto"):
        return
    if str(cfg.trainer.accelerator) == "auto" and torch.cuda.is_available():
        return
    if not any(isinstance(m, torch.nn.LSTM) for m in model.modules()):
        return
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    if not _cpu_lstm_mixed_supported(dtype):
        raise PrecisionError(
            f"trainer.precision={precision} cannot train an LSTM on this CPU: PyTorch's reduced-precision "
            "CPU LSTM kernel (oneDNN) needs AVX-512, which this CPU lacks. Use trainer.precision=32-true, "
            f"a GRU or RNN cell ({cfg.family}.model.cell=gru), or a GPU (trainer=gpu).")


def check_accelerator(cfg: DictConfig) -> None:
    """Refuse, before any MLflow run or output exists, an accelerator this machine does not have."""
    accelerator = str(cfg.trainer.accelerator)
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"{cfg.family}.trainer.accelerator={accelerator} but this machine has no usable CUDA GPU "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False). Use "
            f"{cfg.family}.trainer.accelerator=cpu (or auto, which picks a GPU when there is one).")
    if accelerator == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"{cfg.family}.trainer.accelerator=mps but this machine has no Apple MPS device. "
                          f"Use {cfg.family}.trainer.accelerator=cpu (or auto).")


def machine_summary(cfg: DictConfig) -> dict:
    """Where the weights were computed (train_summary.json; the report names it): float rounding, and so
    the exact numbers, depend on the CPU's instruction set, the device and the precision."""
    from rnnlab.tracking.mlflow_utils import cpu_info

    info = {**cpu_info(), "torch": torch.__version__, "precision": str(cfg.trainer.precision),
            "device": "cpu", "threads": torch.get_num_threads()}
    if str(cfg.trainer.accelerator) in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    return info


def check_writable(folder: Path, what: str) -> None:
    """Create `folder` and write a probe file in it, so that a read-only or full destination is found before
    training, not after it (the model is saved at the end)."""
    from rnnlab.errors import user_os_error

    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".rnnlab-write-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        reason = user_os_error(err) or f"{type(err).__name__}: {err}"
        raise ConfigError(f"{what} cannot be written, so training would be lost at the end: {reason}") from None


def uses_local_ddp(cfg: DictConfig) -> bool:
    return str(cfg.trainer.strategy) == "ddp" and int(cfg.trainer.num_nodes) == 1


def build_trainer(cfg: DictConfig, **kwargs):
    """The Lightning Trainer of `cfg.trainer`; settings Lightning refuses (a strategy name it does not know,
    devices it cannot find) become one ConfigError naming the keys."""
    import pytorch_lightning as pl
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    t = cfg.trainer
    strategy = t.strategy
    if uses_local_ddp(cfg):  # one machine: a rendezvous nothing outside it can reach (training/distributed.py)
        from rnnlab.training.distributed import local_ddp_strategy

        strategy = local_ddp_strategy()
    try:
        return pl.Trainer(
            accelerator=t.accelerator, devices=t.devices, num_nodes=int(t.num_nodes), strategy=strategy,
            precision=t.precision, max_epochs=int(t.max_epochs), min_epochs=int(t.min_epochs),
            gradient_clip_val=t.gradient_clip_val, deterministic=t.deterministic,
            limit_train_batches=t.limit_train_batches, **kwargs)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as err:
        first = " ".join(str(err).split())
        raise ConfigError(
            f"Lightning cannot build a Trainer from {cfg.family}.trainer (accelerator={t.accelerator}, "
            f"devices={t.devices}, strategy={t.strategy}, precision={t.precision}): {first} "
            "Fix the named key, or pick a preset with trainer=cpu|gpu|ddp.") from None


def check_mid_epoch_checkpoints(cfg: DictConfig, datamodule) -> int:
    """`trainer.checkpoint_every_n_steps` (0: checkpoints at epoch ends only), checked against what the
    family's data can do: resuming inside an epoch needs a data module that restores its position."""
    key = f"{cfg.family}.trainer.checkpoint_every_n_steps"
    value = cfg.trainer.get("checkpoint_every_n_steps") or 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key}={value!r}: expected a whole number of training batches >= 0 (0 = checkpoints "
                          "at the end of each epoch only)")
    if value and not getattr(datamodule, "resumes_mid_epoch", False):
        raise ConfigError(f"{key}={value}: the {cfg.family} family's training batches are shuffled each epoch and "
                          "cannot resume inside one, so checkpoints are taken at epoch ends only; set "
                          f"{key}=0")
    return int(value)


class TrainingStopped(RnnlabError):
    """SIGTERM (a user, a scheduler, or the watchdog after the parent `dvc` died) stopped the training."""


def _raise_stopped(hint: str):
    def handler(signum, frame):
        raise TrainingStopped(f"training stopped by signal {signal.Signals(signum).name}. {hint}".strip())
    return handler


def _is_rank_zero() -> bool:
    """This process is the first of a (possibly distributed) training, judged from the launchers' variables."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "RANK"))


def _proc(pid: int) -> tuple[int, str, list[str]] | None:
    """(parent pid, start time, argv) of a process, from /proc; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except (OSError, IndexError):
        return None
    return int(stat[1]), stat[19], argv


def _is_dvc(argv: list[str]) -> bool:
    """`dvc ...`, `python .../bin/dvc ...` or `python -m dvc ...`."""
    head = [Path(a).name for a in argv[:3]]
    return head[:1] == ["dvc"] or head[1:2] == ["dvc"] or head[1:3] == ["-m", "dvc"]


def dvc_ancestor(levels: int = 3) -> tuple[int, str] | None:
    """(pid, start time) of the `dvc` process that started this one: the parent, or a grandparent when a shell
    sits in between (`/bin/sh -c ...`, as DVC sometimes runs a stage command)."""
    pid = os.getppid()
    for _ in range(levels):
        info = _proc(pid)
        if info is None or pid <= 1:
            return None
        parent, started, argv = info
        if _is_dvc(argv):
            return pid, started
        pid = parent
    return None


def stop_with_dvc_parent(poll_seconds: float = 1.0) -> threading.Thread | None:
    """When this process was started by `dvc`, stop it with SIGTERM as soon as that dvc process is gone
    (killed with -9, the training would otherwise go on as an orphan, and the next `dvc repro` would start a
    second training of the same variant). Linux only (/proc)."""
    found = dvc_ancestor()
    if found is None:
        return None
    dvc_pid, started = found

    def alive() -> bool:
        info = _proc(dvc_pid)
        return info is not None and info[1] == started  # the same process, not a reused pid

    def watch() -> None:
        while alive():
            time.sleep(poll_seconds)
        print(f"train: the dvc process that started this training (pid {dvc_pid}) is gone; stopping",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="rnnlab-dvc-watch", daemon=True)
    thread.start()
    return thread


def train(cfg: DictConfig, out_dir: Path, overrides: list[str] | None = None,
          checkpoint_dir: Path | None = None) -> dict:
    """Train one model into `out_dir`. With a `checkpoint_dir` (the DVC stage's persistent
    checkpoints/... folder, or cfg.checkpoint_dir) a run killed part-way resumes from its last finished
    epoch in the same MLflow run and ends as an uninterrupted run would (rnnlab.training.checkpointing);
    without one, checkpoints go to a temporary folder."""
    import pytorch_lightning as pl

    from rnnlab import tasks
    from rnnlab.training.checkpointing import CheckpointFolder, fingerprint

    out_dir = Path(out_dir)
    check_writable(out_dir.parent, f"the model folder {out_dir}")
    if checkpoint_dir is not None:
        check_writable(Path(checkpoint_dir), f"the checkpoint folder {checkpoint_dir}")
    # (The checkpoint folder holds state.json, and when resuming the checkpoints: "exists and is not empty"
    # is expected, not a problem.)
    silence_known_noise()
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    family = tasks.get(cfg.family)
    built = family.build(cfg)
    check_accelerator(cfg)
    check_precision(cfg, built.module.model)
    every = check_mid_epoch_checkpoints(cfg, built.datamodule)
    params = sum(p.numel() for p in built.module.model.parameters())
    trainable = sum(p.numel() for p in built.module.model.parameters() if p.requires_grad)

    temporary = checkpoint_dir is None
    ckpt_dir = Path(tempfile.mkdtemp(prefix="rnnlab-ckpt-")) if temporary else Path(checkpoint_dir)
    folder = CheckpointFolder(ckpt_dir, fingerprint(OmegaConf.to_container(cfg, resolve=True), built.info))
    if not temporary and _is_rank_zero():
        folder.lock()  # one training per checkpoint folder; released when this process ends, however it ends
    hint = ("The last good checkpoint (end of the last finished epoch, or the last step checkpoint) is kept in "
            f"{ckpt_dir}; the same command resumes from it." if not temporary else "")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stopped(hint)) if main_thread else None
    from rnnlab.training.distributed import finish_local_rendezvous, prepare_local_rendezvous

    rendezvous = prepare_local_rendezvous() if uses_local_ddp(cfg) else None
    try:
        return _train(cfg, out_dir, overrides, folder, temporary, family, built, params, trainable, hint, every)
    finally:
        finish_local_rendezvous(rendezvous)
        folder.unlock()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        if temporary:
            shutil.rmtree(ckpt_dir, ignore_errors=True)


def _train(cfg, out_dir, overrides, folder, temporary, family, built, params, trainable, hint, every) -> dict:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint

    from rnnlab.data.prepare import tokenized_dir
    from rnnlab.tracking.mlflow_utils import TrackingError, flatten, log_model_folder, make_logger, run_tags, system_info
    from rnnlab.training.callbacks import History
    from rnnlab.training.checkpointing import (BEST_NAME, AtomicCheckpointIO, EpochSeed, FiniteLoss,
                                               MidEpochCheckpoint, ResumeCheckpoint)

    ckpt_dir = folder.folder
    data, module, task_info, tokenizer_files = built.datamodule, built.module, built.info, built.tokenizer_files
    folder.prepare()
    if folder.message:
        print(f"train: {folder.message}", flush=True)

    variant = variant_name(cfg)
    run_name, tags = f"{cfg.data.name}/{variant}/seed{cfg.seed}", run_tags(cfg, overrides or [])
    logger = make_logger(cfg, run_name, tags, run_id=folder.run_id)
    try:  # create or open the run now (retried): a tracking backend that stays down stops us here
        _ = logger.run_id
    except TrackingError:
        if folder.run_id is None:
            raise
        print(f"train: the checkpoint's MLflow run {folder.run_id} cannot be opened; continuing in a new run",
              flush=True)
        folder.run_id = None
        logger = make_logger(cfg, run_name, tags)
        _ = logger.run_id
    if folder.abandoned_run_id:  # the run of a damaged resume state ends as FAILED, not RUNNING for ever
        logger.safely("mark the abandoned run failed", lambda: logger.experiment.set_terminated(
            folder.abandoned_run_id, "FAILED"))
    try:  # from here on, any failure marks the run FAILED (it never stays RUNNING)
        if folder.run_id is None:  # a new run (a resumed one has its parameters already)
            logger.log_hyperparams({**flatten(public_config(cfg)), **system_info(str(cfg.trainer.accelerator))})
            logger.log_metrics({"parameters": params, "trainable_parameters": trainable}, step=0)
        else:
            logger.safely("tag the resumed run", lambda: logger.experiment.set_tag(
                logger.run_id, "resumed_from", str(folder.resume_path or "start")))
        if not temporary and logger.run_id is not None:
            folder.write_state("running", logger.run_id, **folder.progress)

        monitor = cfg.monitor
        mode = family.monitors[monitor]
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename=BEST_NAME, monitor=monitor,
                                     mode=mode, save_top_k=1, enable_version_counter=False)
        early = EarlyStopping(monitor=monitor, mode=mode, patience=int(cfg.trainer.patience))
        bar_callbacks, enable_bar, print_lines = _progress_bar(cfg)
        curves = None
        if cfg.get("curves_dir"):
            from functools import partial

            from rnnlab.training.curves import curve_metric, write_curves

            # named after the stage's model folder; an interactive run's after its variant and job folder
            stem = Path(out_dir).name if cfg.get("out_dir") else f"{variant}-{Path(out_dir).parent.name}"
            curves = partial(write_curves, cfg.curves_dir, stem, curve_metric(family))
        history = History(print_lines, on_epoch=curves)
        callbacks = [EpochSeed(int(cfg.seed)), FiniteLoss(hint, cfg.family), checkpoint, early, history, *bar_callbacks]
        if not temporary:
            callbacks.append(ResumeCheckpoint(folder, logger.run_id))
            if every:
                callbacks.append(MidEpochCheckpoint(folder, logger.run_id, every))
        trainer = build_trainer(
            cfg, num_sanity_val_steps=0, callbacks=callbacks, logger=logger, plugins=[AtomicCheckpointIO()],
            enable_progress_bar=enable_bar, enable_model_summary=False, log_every_n_steps=10,
            use_distributed_sampler=False, default_root_dir=str(ckpt_dir))
        start = time.perf_counter()
        trainer.fit(module, datamodule=data, ckpt_path=folder.resume_path, weights_only=True)
        fit_seconds = time.perf_counter() - start
        if not trainer.is_global_zero:
            return {}
        best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        module.load_state_dict(best["state_dict"])
        summary = {
            "variant": variant,
            "dataset": cfg.data.name,
            "best_epoch": int(best["epoch"]) + 1,
            "best_" + monitor: float(checkpoint.best_model_score),
            "epochs_run": len(history.rows),
            "fit_seconds": round(fit_seconds, 2),
            "resumed": folder.resume_path is not None,
            "seconds_per_epoch": round(sum(history.seconds) / max(len(history.seconds), 1), 3),
            "train_tokens_per_second": round(history.tokens / max(history.train_seconds, 1e-9)),
            "parameters": params,
            "trainable_parameters": trainable,
            "history": history.rows,
            "machine": machine_summary(cfg),
            "mlflow": {"tracking_uri": cfg.tracking.tracking_uri,
                       "experiment_id": logger.experiment_id, "run_id": logger.run_id},
        }
        public = public_config(cfg)
        model_info = {
            "family": cfg.family,
            "model": OmegaConf.to_container(cfg.model),
            **task_info,
            "config": public,
        }
        client = logger.experiment
        with atomic_dir(out_dir) as tmp:
            save_torch(module.model.state_dict(), tmp / "model.pt")
            write_json(tmp / "model.json", model_info)
            for name in tokenizer_files:
                shutil.copy(Path(tokenized_dir(cfg)) / name, tmp / name)
            (tmp / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(public)), encoding="utf-8")
            if cfg.tracking.log_model:  # the folder as an MLflow model (pyfunc, no pickle), for the registry
                model_uri = logger.safely("log the model", lambda: log_model_folder(
                    cfg.tracking.tracking_uri, logger.run_id, tmp))
                if model_uri:
                    summary["mlflow"]["model_uri"] = model_uri
            logger.safely("log config.yaml", lambda: client.log_artifact(logger.run_id, str(tmp / "config.yaml")))
            if cfg.tracking.log_checkpoint:
                logger.safely("log the checkpoint", lambda: client.log_artifact(
                    logger.run_id, checkpoint.best_model_path, "checkpoint"))
            for key in ("best_" + monitor, "train_tokens_per_second"):
                name = key if key.startswith("best_") else key + "_mean"
                logger.safely(f"log {name}", lambda: client.log_metric(logger.run_id, name, float(summary[key])))
            summary["mlflow"]["failed_calls"] = logger.failed_calls
            write_json(tmp / "train_summary.json", summary)
        if curves is not None:  # also when a resumed training had no epoch left to run
            curves(history.rows)
        if not temporary:
            folder.finish(logger.run_id, epochs_done=len(history.rows))
        return summary
    except BaseException:
        if logger.run_id is not None:  # the run must not look like a finished training
            logger.safely("mark the run failed", lambda: logger.experiment.set_terminated(logger.run_id, "FAILED"))
        raise
