"""The Lightning DataModule shape every family's data takes: train/validation/test loaders over the
tokenize stage's output, training batches split across DDP ranks."""

from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from rnnlab.data.batching import make_loader, rows


class SplitDataModule(pl.LightningDataModule):
    """Loaders over `self.dataset[split]` (a `datasets.DatasetDict`). A family names the columns a batch is
    made of, the collate function that batches them, and the length key its batches are bucketed by."""

    columns: tuple[str, ...] = ()

    def __init__(self, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__()
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.dataset = None

    collate: Callable

    def bucket_key(self, *columns: list) -> list[float]:
        """The sort key of each row; default: the length of the first column's ids."""
        return [len(ids) for ids in columns[0]]

    def loader(self, split: str, shuffle: bool, batch_size: int | None = None, replicas: int = 1,
               rank: int = 0) -> DataLoader:
        columns = [rows(self.dataset[split][name]) for name in self.columns]
        return make_loader(columns, self.collate, self.bucket_key(*columns), batch_size or self.batch_size,
                           shuffle, self.seed, self.num_workers, replicas, rank)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        replicas, rank = 1, 0
        if shuffle and self.trainer is not None and self.trainer.world_size > 1:
            replicas, rank = self.trainer.world_size, self.trainer.global_rank
        return self.loader(split, shuffle, replicas=replicas, rank=rank)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
