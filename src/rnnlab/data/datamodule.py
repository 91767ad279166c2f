"""Lightning DataModule over the tokenize stage's output."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from rnnlab.data.batching import make_loader


class ClassificationDataModule(pl.LightningDataModule):
    """Train/validation/test loaders; training batches are split across DDP ranks."""

    def __init__(self, tokenized: Path, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__()
        from rnnlab.data.prepare import load_tokenized

        self.dataset, self.tokenizer = load_tokenized(Path(tokenized))
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self.label_names = list(self.dataset["train"].features["label"].names)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        replicas, rank = 1, 0
        if shuffle and self.trainer is not None and self.trainer.world_size > 1:
            replicas, rank = self.trainer.world_size, self.trainer.global_rank
        data = self.dataset[split]
        return make_loader(data["input_ids"], data["label"], self.batch_size, shuffle, self.seed,
                           self.num_workers, replicas, rank)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class TranslationDataModule(pl.LightningDataModule):
    """Sentence-pair loaders plus what validation BLEU needs: each validation row's source and the
    references of every unique source (all its translations in the split)."""

    def __init__(self, tokenized: Path, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__()
        from rnnlab.data.pairs import source_key
        from rnnlab.data.prepare import load_tokenized_pairs

        self.dataset, self.tokenizers = load_tokenized_pairs(Path(tokenized))
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        validation = self.dataset["validation"]
        self.val_keys = [source_key(s) for s in validation["source"]]
        self.val_references: dict[str, list[str]] = {}
        for key, target in zip(self.val_keys, validation["target"]):
            self.val_references.setdefault(key, []).append(target)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        from rnnlab.data.batching import make_pair_loader

        replicas, rank = 1, 0
        if shuffle and self.trainer is not None and self.trainer.world_size > 1:
            replicas, rank = self.trainer.world_size, self.trainer.global_rank
        data = self.dataset[split]
        return make_pair_loader(data["source_ids"], data["target_ids"], self.batch_size, shuffle, self.seed,
                                self.num_workers, replicas, rank)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)
