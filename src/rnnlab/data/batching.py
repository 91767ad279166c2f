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


def _generator(seed: int) -> torch.Generator:
    """The loader's own generator: creating an iterator draws a worker base seed from it, not from the
    global generator, so dropout draws do not depend on when Lightning creates iterators (resume)."""
    return torch.Generator().manual_seed(seed)


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
    return {"ids": _pad(ids), "lengths": lengths, "labels": torch.tensor(labels, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long)}


def rows(column) -> list:
    """A data set column as a plain list. `datasets` returns lazy Column objects whose every row access
    reads Arrow again (about 100 us a row: measured 2.4 s of a 9 s classification epoch, see
    benchmarks/RESULTS.md); the loaders index rows at random, so they read each column once here."""
    return column if isinstance(column, list) else column[:]


def make_loader(ids: list[list[int]], labels: list[int], batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int = 0, num_replicas: int = 1, rank: int = 0) -> DataLoader:
    """A DataLoader over encoded texts with length-bucketed batches."""
    ids, labels = rows(ids), rows(labels)
    sampler = BucketBatchSampler([len(s) for s in ids], batch_size, shuffle, seed,
                                 num_replicas=num_replicas, rank=rank)
    return DataLoader(EncodedDataset(ids, labels), batch_sampler=sampler, collate_fn=collate,
                      num_workers=num_workers, persistent_workers=num_workers > 0, generator=_generator(seed))


# ---- sentence pairs (translation) -----------------------------------------------------------

class PairDataset(torch.utils.data.Dataset):
    """(index, source ids, target ids) rows; target ids without <bos>/<eos>."""

    def __init__(self, source_ids: list[list[int]], target_ids: list[list[int]]):
        self.source_ids, self.target_ids = source_ids, target_ids

    def __len__(self) -> int:
        return len(self.source_ids)

    def __getitem__(self, index: int):
        return index, self.source_ids[index], self.target_ids[index]


def _pad(seqs: Sequence[Sequence[int]]) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(seqs):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out  # (batch, max_len)


def collate_pairs(items) -> dict[str, torch.Tensor]:
    """Right-padded source ids; decoder inputs `<bos> y` and outputs `y <eos>` (same length)."""
    from rnnlab.data.tokenizer import BOS_ID, EOS_ID

    index, source, target = zip(*items)
    return {
        "ids": _pad(source),  # (batch, src_len)
        "lengths": torch.tensor([len(s) for s in source], dtype=torch.long),
        "tgt_in": _pad([[BOS_ID, *t] for t in target]),  # (batch, tgt_len + 1)
        "tgt_out": _pad([[*t, EOS_ID] for t in target]),  # (batch, tgt_len + 1)
        "tgt_lengths": torch.tensor([len(t) + 1 for t in target], dtype=torch.long),
        "index": torch.tensor(index, dtype=torch.long),
    }


def make_pair_loader(source_ids: list[list[int]], target_ids: list[list[int]], batch_size: int,
                     shuffle: bool, seed: int = 0, num_workers: int = 0, num_replicas: int = 1,
                     rank: int = 0) -> DataLoader:
    """Batches bucketed by source length (target length breaks ties)."""
    source_ids, target_ids = rows(source_ids), rows(target_ids)
    keys = [len(s) + len(t) / 1000.0 for s, t in zip(source_ids, target_ids)]
    sampler = BucketBatchSampler(keys, batch_size, shuffle, seed, num_replicas=num_replicas, rank=rank)
    return DataLoader(PairDataset(source_ids, target_ids), batch_sampler=sampler, collate_fn=collate_pairs,
                      num_workers=num_workers, persistent_workers=num_workers > 0, generator=_generator(seed))
