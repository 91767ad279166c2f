"""Training pieces of the language-model family: truncated back-propagation through time (TBPTT) over
contiguous streams, done by the project (Lightning 2 has no `truncated_bptt_steps`).

The corpus (one id stream) is cut into `batch_size` equal contiguous streams, one per batch row; batch k
holds positions [s_k, s_k + len_k) of every stream as inputs and the positions one further as targets.
The recurrent state at the end of batch k, detached from its graph, starts batch k + 1, so information
flows forward across the whole epoch while gradients stop at window boundaries. Each epoch visits every
position exactly once, starting with a zero state. Window lengths are `bptt` (the last one shorter), or
with `variable: true` drawn around `bptt` (N(bptt, 5), N(bptt/2, 5) with probability 0.05, as in
AWD-LSTM), seeded by (seed, epoch) and rescaled to cover the stream exactly: the window boundaries move
from epoch to epoch. (AWD-LSTM also scales the learning rate by len/bptt; with Adam, which normalises
each step, every window simply gets one step.) Under DDP each process trains on its own rows and every
process scores the whole validation stream, so validation perplexity is exact and the same everywhere.

Training resumes inside an epoch (with `trainer.checkpoint_every_n_steps`): the train loader's position
(epoch, windows done) and the module's carried state and running loss go into every checkpoint, so a run
killed after window k continues at window k + 1 from the state window k left, as if never stopped."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils._pytree import tree_map
from torch.utils.data import DataLoader, Dataset

from rnnlab.errors import DataError
from rnnlab.tasks.lm.model import build_lm, detach_state
from rnnlab.training.optim import configure_optimizers


def stream_rows(ids: np.ndarray, rows: int, rank: int = 0, world: int = 1, what: str = "the stream",
                key: str = "lm.optim.batch_size") -> torch.Tensor:
    """The stream as `rows` equal contiguous rows (the tail that does not fill a column is dropped); under DDP
    each of `world` processes takes its share of the rows (every world-th one from `rank`)."""
    if rows < world:
        raise DataError(f"{key}={rows} rows cannot be shared by {world} processes: each needs at least one row; "
                        f"set {key} to {world} or more")
    if ids.size < 2 * rows:
        raise DataError(f"{what} has {ids.size:,} tokens, too few for {rows} rows of at least 2 tokens each; lower "
                        f"{key} (at most {max(ids.size // 2, 1)}) or use a larger corpus")
    columns = ids.size // rows
    grid = torch.as_tensor(np.asarray(ids[: rows * columns], dtype=np.int64).reshape(rows, columns))
    return grid[rank::world].contiguous()


def window_lengths(total: int, bptt: int, variable: bool, seed: int) -> list[int]:
    """Lengths of the windows that cover `total` input positions exactly once."""
    if not variable:
        return [bptt] * (total // bptt) + ([total % bptt] if total % bptt else [])
    rng = np.random.default_rng(seed)
    count = max(total // bptt, 1)
    base = np.where(rng.random(count) < 0.95, bptt, bptt / 2)
    draws = np.maximum(np.round(rng.normal(base, 5.0)), 5.0)
    scaled = np.maximum(np.floor(draws * total / draws.sum()), 1).astype(int)
    scaled[-1] += total - int(scaled.sum())  # whatever rounding left goes to the last window (>= 1: floor above)
    return scaled.tolist()


class Windows(Dataset):
    """The TBPTT windows of one split: item k = {"ids": (rows, len_k), "targets": (rows, len_k), "start"}; with
    a `backward` grid (the reversed stream, for a biLM) also "ids_bwd" and "targets_bwd" at the same place."""

    def __init__(self, grid: torch.Tensor, bptt: int, variable: bool = False, seed: int = 0,
                 backward: torch.Tensor | None = None):
        self.grid, self.bptt, self.variable, self.seed = grid, int(bptt), bool(variable), int(seed)
        self.backward = backward
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        lengths = window_lengths(self.grid.size(1) - 1, self.bptt, self.variable, self.seed * 100_003 + epoch)
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, k: int) -> dict:
        s, n = int(self.starts[k]), int(self.lengths[k])
        item = {"ids": self.grid[:, s:s + n], "targets": self.grid[:, s + 1:s + 1 + n], "start": s}
        if self.backward is not None:
            item.update(ids_bwd=self.backward[:, s:s + n], targets_bwd=self.backward[:, s + 1:s + 1 + n])
        return item


class WindowLoader:
    """The training windows of one epoch in order, resumable inside an epoch. Its state_dict (epoch, windows
    done: the module counts them, since Lightning fetches one window ahead) goes into checkpoints, and
    Lightning hands it back to `load_state_dict` when it restores a checkpoint taken inside an epoch."""

    def __init__(self, windows: Windows):
        self.windows, self.epoch, self.done, self._start = windows, 0, 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.windows.set_epoch(epoch)
            self.epoch, self.done = epoch, 0

    def __len__(self) -> int:
        return len(self.windows)

    def __iter__(self):
        start, self._start = self._start, 0
        for k in range(start, len(self.windows)):
            yield self.windows[k]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        epoch, done = int(state["epoch"]), int(state["done"])
        if done >= len(self.windows):  # that epoch was complete: the next one starts at its first window
            epoch, done = epoch + 1, 0
        self.set_epoch(epoch)
        self.done = self._start = done


class StreamDataModule(pl.LightningDataModule):
    """Train/validation/test windows over the tokenize stage's id streams, in order (never shuffled: the
    carried state needs consecutive windows). Its state is the train loader's position, restored before
    the first window is fetched (whether the checkpoint was taken at an epoch's end or inside one)."""

    resumes_mid_epoch = True

    def __init__(self, tokenized: Path, batch_size: int, eval_batch_size: int, bptt: int, eval_bptt: int,
                 variable: bool, seed: int, bidirectional: bool = False):
        super().__init__()
        from rnnlab.tasks.lm.data import load_streams

        self.streams, self.tokenizer = load_streams(Path(tokenized))
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.bptt, self.eval_bptt, self.variable, self.seed = int(bptt), int(eval_bptt), bool(variable), int(seed)
        self.bidirectional = bool(bidirectional)
        self.windows: dict[str, Windows] = {}
        self.train_loader: WindowLoader | None = None
        self._restored: dict | None = None

    def setup(self, stage: str | None = None) -> None:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self.batch_size % world:  # the carried state is gathered across processes in checkpoints
            raise DataError(f"lm.optim.batch_size={self.batch_size} rows cannot be shared evenly by {world} "
                            f"processes; use a multiple of {world}")
        def grids(split: str, rows: int, rank: int, world: int, key: str) -> dict:
            ids = self.streams[split]
            grid = {"grid": stream_rows(ids, rows, rank, world, f"the {split} stream", key)}
            if self.bidirectional:  # the backward LM reads the reversed stream
                grid["backward"] = stream_rows(ids[::-1].copy(), rows, rank, world, f"the {split} stream", key)
            return grid

        self.windows["train"] = Windows(bptt=self.bptt, variable=self.variable, seed=self.seed,
                                        **grids("train", self.batch_size, rank, world, "lm.optim.batch_size"))
        for split in ("validation", "test"):  # every process scores the whole stream
            self.windows[split] = Windows(bptt=self.eval_bptt,
                                          **grids(split, self.eval_batch_size, 0, 1, "lm.stream.eval_batch_size"))

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.windows[split], batch_size=None, shuffle=False)

    def train_dataloader(self) -> WindowLoader:
        self.train_loader = WindowLoader(self.windows["train"])
        if self._restored is not None:
            self.train_loader.load_state_dict(self._restored)
            self._restored = None
        return self.train_loader

    def state_dict(self) -> dict:
        return self.train_loader.state_dict() if self.train_loader is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = dict(state_dict) if state_dict else None

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class LMModule(pl.LightningModule):
    """Next-word cross-entropy with the state carried across windows; per-token loss and perplexity per
    split and epoch (the validation/test figures are exact corpus averages: summed, then divided)."""

    def __init__(self, model_cfg: dict, optim_cfg: dict, vocab_size: int, embeddings: np.ndarray | None = None,
                 words: list[str] | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["embeddings", "words"])
        self.model = build_lm(model_cfg, vocab_size, embeddings, words)
        self.state = {"train": None, "val": None, "test": None}
        self.sums = {split: [0.0, 0] for split in ("train", "val", "test")}

    @staticmethod
    def batch_tokens(batch: dict) -> int:
        return int(batch["ids"].numel())

    def _carry(self, split: str, batch: dict, batch_idx: int) -> torch.Tensor:
        if batch_idx == 0:  # each epoch starts from a zero state at the streams' start
            self.state[split] = None
            self.sums[split] = [0.0, 0]
        state = self.state[split]
        if state is not None:  # (a state restored from a checkpoint is on the CPU)
            state = tree_map(lambda t: t.to(batch["ids"].device), state)
        nll, state = self.model.window_nll(batch, state)
        self.state[split] = detach_state(state)
        self.sums[split][0] += float(nll.detach().sum())
        self.sums[split][1] += nll.numel()
        return nll.mean()

    def _log_epoch(self, split: str) -> None:
        total, count = self.sums[split]
        if count:
            loss = total / count
            # once per epoch (on_epoch: it reaches MLflow and the History row); every process computed the
            # validation value over the whole stream, so no averaging across processes is needed
            self.log(f"{split}_loss", loss, on_step=False, on_epoch=True, batch_size=1)
            self.log(f"{split}_ppl", math.exp(min(loss, 50.0)), on_step=False, on_epoch=True, batch_size=1)

    def _train_loader(self) -> WindowLoader | None:
        return getattr(getattr(self.trainer, "datamodule", None), "train_loader", None)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._carry("train", batch, batch_idx)
        loader = self._train_loader()
        last = batch_idx == self.trainer.num_training_batches - 1
        if loader is not None:  # (the last batch completes the epoch, also when limit_train_batches cuts it)
            loader.done = len(loader) if last else batch_idx + 1
        if last:  # before History reads the epoch (see classify)
            self._log_epoch("train")
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_loader().set_epoch(self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The carried training state and running loss (gathered from every process under DDP), so a run
        restored from a checkpoint inside an epoch continues from them."""
        state, (total, count) = self.state["train"], self.sums["train"]
        sums = torch.tensor([total, float(count)], dtype=torch.float64)
        world = self.trainer.world_size
        if world > 1:  # (every process saves: the gathers are collective)
            state = None if state is None else tree_map(self.all_gather, state)
            sums = self.all_gather(sums)
        checkpoint["lm_carry"] = {"world": world, "state": None if state is None else tree_map(torch.Tensor.cpu, state),
                                  "sums": sums.cpu()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        carry = checkpoint.get("lm_carry")
        if not carry:
            return
        world, rank = self.trainer.world_size, self.trainer.global_rank
        if int(carry["world"]) != world:
            raise DataError(f"the checkpoint was taken with {carry['world']} training processes and this run has "
                            f"{world}; resume with the same lm.trainer.devices")
        pick = (lambda t: t[rank]) if world > 1 else (lambda t: t)
        self.state["train"] = None if carry["state"] is None else tree_map(pick, carry["state"])
        sums = pick(carry["sums"])
        self.sums["train"] = [float(sums[0]), int(sums[1])]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._carry("val", batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._carry("test", batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        return configure_optimizers(self.model, "embedding.", self.hparams.optim_cfg, self.trainer)
