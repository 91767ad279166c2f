"""Length-bucketed batches of pre-tokenised ids (plain PyTorch; no Lightning import)."""

from __future__ import annotations

import math
from typing import Iterator, Sequence

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


class EncodedDataset(torch.utils.data.Dataset):
    def __init__(self, ids: list[list[int]], labels: list[int]):
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        return index, self.ids[index], self.labels[index]


def collate(items) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence in the batch."""
    index, ids, labels = zip(*items)
    lengths = torch.tensor([len(s) for s in ids], dtype=torch.long)
    padded = torch.full((len(ids), int(lengths.max())), PAD_ID, dtype=torch.long)  # (batch, time)
    for row, seq in enumerate(ids):
        padded[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return {"ids": padded, "lengths": lengths, "labels": torch.tensor(labels, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long)}


def make_loader(ids: list[list[int]], labels: list[int], batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int = 0, num_replicas: int = 1, rank: int = 0) -> DataLoader:
    """A DataLoader over encoded texts with length-bucketed batches."""
    sampler = BucketBatchSampler([len(s) for s in ids], batch_size, shuffle, seed,
                                 num_replicas=num_replicas, rank=rank)
    return DataLoader(EncodedDataset(ids, labels), batch_sampler=sampler, collate_fn=collate,
                      num_workers=num_workers, persistent_workers=num_workers > 0)
