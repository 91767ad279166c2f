"""Length-bucketed batches of pre-tokenised ids (plain PyTorch; no Lightning import)."""

from __future__ import annotations

import itertools
import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from rnnlab.data.tokenizer import PAD_ID


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar length with little padding.

    Training: each epoch shuffles (seeded by seed + epoch), sorts within pools of
    `pool_batches * batch_size` examples by length, cuts batches and shuffles the batch order.
    Evaluation (shuffle=False): batches in sorted length order, deterministic.
    With several processes (DDP), each rank takes every `num_replicas`-th batch of the same order.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0,
                 pool_batches: int = 50, num_replicas: int = 1, rank: int = 0, drop_last: bool = False):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.pool_size = pool_batches * batch_size
        self.num_replicas, self.rank, self.drop_last = num_replicas, rank, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.pool_size):
            pool = order[start:start + self.pool_size]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        rng.shuffle(batches)
        return batches

    def _per_rank(self, batches: list) -> list:
        if self.num_replicas == 1:
            return batches
        per_rank = math.ceil(len(batches) / self.num_replicas)
        batches = batches + batches[: per_rank * self.num_replicas - len(batches)]  # equal counts
        return batches[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._per_rank(self._batches()):
            yield batch.tolist()

    def __len__(self) -> int:
        return len(self._per_rank(self._batches()))


def _generator(seed: int) -> torch.Generator:
    """The loader's own generator: creating an iterator draws a worker base seed from it, not from the
    global generator, so dropout draws do not depend on when Lightning creates iterators (resume)."""
    return torch.Generator().manual_seed(seed)


class RowsDataset(torch.utils.data.Dataset):
    """Rows of parallel columns: item i is (i, column_0[i], column_1[i], ...)."""

    def __init__(self, *columns: list):
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, index: int):
        return (index, *(column[index] for column in self.columns))


def rows(column) -> list:
    """A data set column as a plain list. `datasets` returns lazy Column objects whose every row access
    reads Arrow again (about 100 us a row: measured 2.4 s of a 9 s classification epoch, see
    docs/benchmarks.md); the loaders index rows at random, so they read each column once here."""
    return column if isinstance(column, list) else column[:]


def pad(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    """Right-pad id sequences with PAD_ID: (batch, longest length). One vectorised copy, no per-row loop."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    out = np.full((len(seqs), int(lengths.max())), PAD_ID, dtype=np.int64)
    out[np.arange(out.shape[1]) < lengths[:, None]] = np.fromiter(
        itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
    return torch.from_numpy(out)  # (batch, max_len)


def make_loader(columns: Sequence[list], collate: Callable, lengths: Sequence[float], batch_size: int,
                shuffle: bool, seed: int = 0, num_workers: int = 0, num_replicas: int = 1,
                rank: int = 0) -> DataLoader:
    """A DataLoader over parallel columns of encoded rows, in length-bucketed batches (`lengths`: the
    sort key of each row), collated by `collate` from (index, *row) items."""
    sampler = BucketBatchSampler(lengths, batch_size, shuffle, seed, num_replicas=num_replicas, rank=rank)
    return DataLoader(RowsDataset(*columns), batch_sampler=sampler, collate_fn=collate,
                      num_workers=num_workers, persistent_workers=num_workers > 0, generator=_generator(seed))
