"""Callbacks: per-epoch history (for the stage's own outputs and the learning-curve files) with one printed line per epoch, and the
terminal progress bar (epochs counted from 1, the monitored metric shown, no logger version)."""

from __future__ import annotations

import sys
import time

import pytorch_lightning as pl


class History(pl.Callback):
    """Keeps every epoch's logged metrics, so results never depend on the tracker. Training tokens come from
    the LightningModule's `batch_tokens(batch)` (each family counts its own)."""

    def __init__(self, print_lines: bool, on_epoch=None):
        self.rows: list[dict[str, float]] = []
        self.print_lines = print_lines
        self.on_epoch = on_epoch  # called with the rows after each epoch on rank 0 (the learning-curve files)
        self.tokens = 0
        self.train_seconds = 0.0
        self._start = self._last_batch_end = 0.0
        self._epoch_tokens = 0
        self._restored_epoch: tuple[int, float] | None = None  # (tokens, seconds) of an epoch resumed inside

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from rnnlab.training.checkpointing import resuming_mid_epoch

        restored, self._restored_epoch = self._restored_epoch, None
        if restored and resuming_mid_epoch(trainer):  # (no on_train_epoch_start for an epoch restored inside)
            self._start = self._last_batch_end = time.perf_counter()
            self._epoch_tokens = restored[0]  # the epoch's tokens and time before the checkpoint count
            self._start -= restored[1]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = self._last_batch_end = time.perf_counter()
        self._epoch_tokens = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        tokens = int(pl_module.batch_tokens(batch)) if hasattr(pl_module, "batch_tokens") else 0
        self._epoch_tokens += tokens
        self.tokens += tokens
        self._last_batch_end = time.perf_counter()

    def state_dict(self) -> dict:
        """Saved in checkpoints, so a resumed run's history and throughput cover every epoch."""
        return {"rows": self.rows, "tokens": self.tokens, "train_seconds": self.train_seconds,
                "epoch_tokens": self._epoch_tokens, "epoch_seconds": self._last_batch_end - self._start}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])
        self.tokens, self.train_seconds = int(state_dict["tokens"]), float(state_dict["train_seconds"])
        if "epoch_tokens" in state_dict:  # used only when the checkpoint was taken inside an epoch
            self._restored_epoch = (int(state_dict["epoch_tokens"]), float(state_dict["epoch_seconds"]))

    @property
    def seconds(self) -> list[float]:
        return [row["epoch_seconds"] for row in self.rows]

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Runs after the epoch's validation: epoch_seconds covers training and validation."""
        metrics = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1}
        row.update({k: round(float(v), 5) for k, v in sorted(metrics.items()) if v.numel() == 1})
        row["epoch_seconds"] = round(time.perf_counter() - self._start, 3)
        # Throughput of the training batches only (validation excluded): tokens / wall second.
        train_seconds = max(self._last_batch_end - self._start, 1e-9)
        self.train_seconds += train_seconds
        row["train_tokens_per_second"] = round(self._epoch_tokens / train_seconds, 1)
        if trainer.logger is not None:
            trainer.logger.log_metrics({"epoch_seconds": row["epoch_seconds"],
                                        "train_tokens_per_second": row["train_tokens_per_second"]},
                                       step=trainer.current_epoch)
        self.rows.append(row)
        if self.on_epoch is not None and trainer.is_global_zero:
            try:  # the files are rewritten whole at the end of training, where a failure does stop the run
                self.on_epoch(self.rows)
            except OSError as err:
                print(f"warning: the learning curves could not be written after epoch {row['epoch']} ({err}); "
                      "training goes on", file=sys.stderr, flush=True)
        if self.print_lines and trainer.is_global_zero:
            shown = "  ".join(f"{k} {v:.4f}" if k != "epoch_seconds" else f"{v:.1f}s"
                              for k, v in row.items() if k not in ("epoch", "train_tokens_per_second"))
            shown += f"  {row['train_tokens_per_second']:.0f} tok/s"
            line = f"epoch {row['epoch']}/{trainer.max_epochs}  {shown}"
            bar = trainer.progress_bar_callback
            if bar is not None and bar.is_enabled:
                bar.print(line)  # above the live bar, which stays intact
            else:
                print(line, flush=True)


def epoch_bar(monitor: str):
    """A RichProgressBar that counts epochs from 1 (`Epoch 1/8`), shows the monitored validation metric
    beside the training loss, hides Lightning's logger version (`v_num`), and prints lines above itself."""
    from pytorch_lightning.callbacks import RichProgressBar

    class EpochBar(RichProgressBar):
        def _get_train_description(self, current_epoch: int) -> str:
            text = f"Epoch {current_epoch + 1}" + (f"/{self.trainer.max_epochs}" if self.trainer.max_epochs else "")
            return f"{text:{len(self.validation_description)}}"

        def get_metrics(self, trainer, pl_module):
            items = super().get_metrics(trainer, pl_module)
            items.pop("v_num", None)
            value = trainer.callback_metrics.get(monitor)
            if value is not None and value.numel() == 1:
                items[monitor] = round(float(value), 4)
            return items

        def print(self, *args, **kwargs) -> None:
            if self._console is not None:
                self._console.print(*args, **kwargs)
            else:
                print(*args, **kwargs)

    return EpochBar()
