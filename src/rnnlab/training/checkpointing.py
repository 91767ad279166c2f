"""Fault tolerance of a training run: atomic checkpoints, resume after a kill, per-epoch seeding and a
guard against non-finite losses.

A training run with a persistent checkpoint folder (the DVC stage's `checkpoint_dir=checkpoints/...`, a
folder DVC does not manage, so it survives re-runs) keeps there:
- `resume.ckpt`  the full trainer state at the end of the last finished epoch (weights, optimizer,
                 scheduler, loop counters, early stopping, best-checkpoint and history callbacks), or,
                 with `trainer.checkpoint_every_n_steps` on a family whose training data can resume
                 inside an epoch, at the last such step (plus the data position, the family's carried
                 state and torch's random state);
- `best.ckpt`    the best epoch so far by the task's monitor;
- `state.json`   the configuration fingerprint, the MLflow run id and the status (running | finished).
Started again with the same configuration after a kill, training continues from `resume.ckpt` in the
same MLflow run and ends with the same weights and metrics as an uninterrupted run: every epoch's
randomness (shuffling and dropout) is seeded from (seed, epoch), never from how far a process got.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from rnnlab.errors import RnnlabError
from rnnlab.io import read_json, save_torch, write_json

RESUME_NAME, BEST_NAME, STATE_NAME = "resume", "best", "state.json"
# Keys that do not change what is trained (display, tracking destination, where outputs go).
FINGERPRINT_IGNORED = ("trainer.progress_bar", "trainer.checkpoint_every_n_steps", "tracking", "checkpoint_dir", "out_dir",
                      "curves_dir", "paths")


class TrainingDiverged(RnnlabError):
    """The loss became NaN or infinite."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed, so a kill never leaves half a file;
    they load with `weights_only=True` (tensors and plain containers only, no pickled objects)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        os.close(fd)
        try:
            save_torch(checkpoint, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None):
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


def fingerprint(config: dict, extra: dict | None = None) -> str:
    """sha256 of what determines the training (resolved config without FINGERPRINT_IGNORED keys, plus
    `extra`: vocabulary sizes and the like), so a checkpoint is only resumed by the same training."""
    config = json.loads(json.dumps(config))
    for dotted in FINGERPRINT_IGNORED:
        node, *rest = dotted.split(".")
        if rest:
            config.get(node, {}).pop(rest[0], None)
        else:
            config.pop(node, None)
    blob = json.dumps({"config": config, "extra": extra or {}}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class FolderBusy(RnnlabError):
    """Another live process is training into the same checkpoint folder."""


def _loads(path: Path) -> str | None:
    """None when `path` loads as a checkpoint (weights_only); otherwise what is wrong with it."""
    if not path.is_file():
        return "missing"
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a truncated zip, a pickle error, ...: all mean damaged
        return f"unreadable ({type(err).__name__}: {' '.join(str(err).split())[:160]})"
    return None


class CheckpointFolder:
    """The persistent checkpoint folder of one training, and the decision to resume from it. `lock()` makes
    sure that one process at a time trains into it (an advisory lock the kernel drops when its holder dies)."""

    LOCK_NAME = ".lock"

    def __init__(self, folder: str | os.PathLike, fingerprint: str):
        self.folder, self.fingerprint = Path(folder), fingerprint
        self.resume_path: Path | None = None
        self.run_id: str | None = None
        self.abandoned_run_id: str | None = None  # the run of a damaged resume state (to be marked FAILED)
        self.progress: dict[str, int] = {"epochs_done": 0}  # how far the resumed checkpoint got
        self.message = ""
        self._lock_file = None

    def lock(self) -> "CheckpointFolder":
        """Take the folder's lock, or raise FolderBusy naming the process that holds it."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.LOCK_NAME
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            raise FolderBusy(
                f"{self.folder} is in use: {holder} is training into it now. Two trainings of one variant "
                "would overwrite each other's checkpoints; wait for that process to end, or stop it "
                "(`kill <pid>`), then run this again.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        self._lock_file = handle
        return self

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor drops the flock
            self._lock_file = None

    @property
    def state_path(self) -> Path:
        return self.folder / STATE_NAME

    def checkpoint(self, name: str) -> Path:
        return self.folder / f"{name}.ckpt"

    def _clear(self) -> None:
        for path in [*self.folder.glob("*.ckpt"), *self.folder.glob(".*.tmp-*")]:  # incl. saves cut short
            path.unlink(missing_ok=True)  # (under DDP every rank clears)

    def prepare(self) -> "CheckpointFolder":
        """Decide: resume (same configuration, unfinished, `resume.ckpt` present) or start afresh."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            state = read_json(self.state_path)
        except FileNotFoundError:
            state = None
        except (ValueError, OSError) as err:
            state = None
            self.message = f"{self.state_path} is unreadable ({err}); starting afresh"
        if state is not None:
            if state.get("fingerprint") != self.fingerprint:
                self.message = (f"{self.folder} holds checkpoints of another configuration or vocabulary; "
                                "they are not resumed: starting afresh")
                state = None
            elif state.get("status") == "finished":
                state = None  # a finished run started again (e.g. `dvc repro -f`): train anew
        if state is None:
            self._clear()
            return self
        self.run_id = state.get("mlflow_run_id")
        if self.checkpoint(RESUME_NAME).is_file():
            # (a checkpoint inside the first epoch comes before any validation, so before any best.ckpt)
            needed = (RESUME_NAME, BEST_NAME) if state.get("epochs_done", 1) else (RESUME_NAME,)
            damage = {name: _loads(self.checkpoint(name)) for name in needed}
            damage = {name: why for name, why in damage.items() if why}
            if damage:  # truncated by a full disk, deleted by hand, ...: set aside, never resumed
                aside = self._set_aside()
                self.abandoned_run_id, self.run_id = self.run_id, None
                self.message = ("WARNING: the resume state is damaged (" + "; ".join(
                    f"{name}.ckpt {why}" for name, why in damage.items()) + f"); moved to {aside} and "
                    "training restarts from the first epoch in a new MLflow run")
                return self
            self.resume_path = self.checkpoint(RESUME_NAME)
            self.progress = {k: int(state[k]) for k in ("epochs_done", "batches_done") if state.get(k) is not None}
            inside = (f", and {state['batches_done']} training batches of epoch {state['epochs_done'] + 1}"
                      if state.get("batches_done") else "")
            self.message = (f"resuming from {self.resume_path} (epoch {state.get('epochs_done', '?')} done{inside}), "
                            f"MLflow run {self.run_id}")
        else:  # killed during the first epoch: start over, in the same MLflow run
            self._clear()
            self.message = f"an unfinished run without a checkpoint: starting over in MLflow run {self.run_id}"
        return self

    def _set_aside(self) -> Path:
        """Move the checkpoints and state.json into `damaged-<n>/` inside the folder (kept for a post-mortem)."""
        n = 1
        while (self.folder / f"damaged-{n}").exists():
            n += 1
        aside = self.folder / f"damaged-{n}"
        aside.mkdir()
        for path in [*self.folder.glob("*.ckpt"), self.state_path]:
            if path.exists():
                os.replace(path, aside / path.name)
        self._clear()
        return aside

    def write_state(self, status: str, run_id: str | None, **extra: Any) -> None:
        write_json(self.state_path, {"fingerprint": self.fingerprint, "status": status,
                                     "mlflow_run_id": run_id, **extra})

    def finish(self, run_id: str | None, **extra: Any) -> None:
        """The model is saved: drop the checkpoints, keep a record that this training finished."""
        self._clear()
        self.write_state("finished", run_id, **extra)


class ResumeCheckpoint(pl.callbacks.ModelCheckpoint):
    """`resume.ckpt` at the end of every training epoch (after validation, early stopping and the
    history callback), and `state.json` updated with the number of epochs done."""

    def __init__(self, folder: CheckpointFolder, run_id: str | None):
        super().__init__(dirpath=folder.folder, filename=RESUME_NAME, save_top_k=1, monitor=None,
                         save_on_train_epoch_end=True, enable_version_counter=False)
        self.checkpoint_folder, self.run_id = folder, run_id
        self.should_stop = False  # early stopping had ended the run when the checkpoint was taken

    @property
    def state_key(self) -> str:
        return "ResumeCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "should_stop": self.should_stop}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.should_stop = bool(state_dict.get("should_stop", False))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning does not keep `should_stop` in checkpoints: without this, a run killed after early
        # stopping but before its model was saved would train one epoch more than the uninterrupted run.
        if self.should_stop:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.should_stop = bool(trainer.should_stop)
        super().on_train_epoch_end(trainer, pl_module)
        if trainer.is_global_zero:
            self.checkpoint_folder.write_state("running", self.run_id, epochs_done=trainer.current_epoch + 1)


def resuming_mid_epoch(trainer: pl.Trainer) -> bool:
    """True while a run restored from a checkpoint taken inside an epoch finishes that epoch (Lightning's
    fit loop is `restarting` only when the restored epoch was unfinished)."""
    return bool(trainer.fit_loop.restarting)


class MidEpochCheckpoint(pl.Callback):
    """`resume.ckpt` every `every` training batches inside an epoch too (the epoch-end one stays with
    ResumeCheckpoint), for families whose training data resumes inside an epoch: their data module says
    `resumes_mid_epoch = True` and its train loader keeps its position in its state_dict, so Lightning
    restores it. Torch's random state goes into the checkpoint as well and is restored when training
    restarts inside the epoch, so the rest of the epoch draws the same dropout masks as an uninterrupted run."""

    def __init__(self, folder: CheckpointFolder, run_id: str | None, every: int):
        self.checkpoint_folder, self.run_id, self.every = folder, run_id, int(every)
        self._restored: dict | None = None

    @property
    def state_key(self) -> str:
        return "MidEpochCheckpoint"

    def state_dict(self) -> dict[str, Any]:
        state = {"cpu_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # (Lightning does not call on_train_epoch_start for an epoch it restores inside, so EpochSeed does not
        # run then either: this state is the one the uninterrupted run had after the checkpoint's batch)
        restored, self._restored = self._restored, None
        if restored and resuming_mid_epoch(trainer):
            torch.set_rng_state(restored["cpu_rng"])
            if "cuda_rng" in restored and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(restored["cuda_rng"])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        done = batch_idx + 1
        if done % self.every or done >= trainer.num_training_batches:  # the epoch's end has its own
            return
        trainer.save_checkpoint(self.checkpoint_folder.checkpoint(RESUME_NAME), weights_only=False)  # (every rank: a collective)
        if trainer.is_global_zero:
            self.checkpoint_folder.write_state("running", self.run_id, epochs_done=trainer.current_epoch,
                                               batches_done=done)


class EpochSeed(pl.Callback):
    """Seeds torch's generator from (seed, epoch) at the start of every training epoch, so dropout in
    epoch k is the same whether the process ran from epoch 1 or resumed at epoch k."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        torch.manual_seed((self.seed * 1_000_003 + trainer.current_epoch) % 2**63)


class FiniteLoss(pl.Callback):
    """Stops training with a clear error when the loss is NaN or infinite, before the backward pass
    (so the weights and the last good checkpoint stay untouched)."""

    def __init__(self, checkpoint_hint: str, family: str = "<family>"):
        self.checkpoint_hint, self.family = checkpoint_hint, family
        self.batch_idx = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.batch_idx = batch_idx

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        value = float(loss.detach())
        if math.isfinite(value):
            return
        raise TrainingDiverged(
            f"the training loss is {value} at epoch {trainer.current_epoch + 1}, global step "
            f"{trainer.global_step}, batch {self.batch_idx} of the epoch; training stopped before this "
            f"update. {self.checkpoint_hint} Lower {self.family}.optim.lr, keep {self.family}.trainer.gradient_clip_val on "
            "(default 1.0), or check the input data of that batch.")
