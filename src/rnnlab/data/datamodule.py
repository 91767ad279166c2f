"""Lightning DataModule over the tokenize stage's output."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from rnnlab.data.batching import make_loader, make_pair_loader


class _SplitLoaders(pl.LightningDataModule):
    """Train/validation/test loaders over `self.dataset`; training batches are split across DDP ranks.
    Subclasses name the two columns a batch is made of and the loader that batches them."""

    columns: tuple[str, str]

    def __init__(self, batch_size: int, seed: int, num_workers: int):
        super().__init__()
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers

    def _make_loader(self, *args) -> DataLoader:
        raise NotImplementedError

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        replicas, rank = 1, 0
        if shuffle and self.trainer is not None and self.trainer.world_size > 1:
            replicas, rank = self.trainer.world_size, self.trainer.global_rank
        data = self.dataset[split]
        return self._make_loader(data[self.columns[0]], data[self.columns[1]], self.batch_size, shuffle,
                                 self.seed, self.num_workers, replicas, rank)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class ClassificationDataModule(_SplitLoaders):
    """Text classification batches (token ids, label)."""

    columns = ("input_ids", "label")

    def __init__(self, tokenized: Path, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__(batch_size, seed, num_workers)
        from rnnlab.data.prepare import load_tokenized

        self.dataset, self.tokenizer = load_tokenized(Path(tokenized))
        self.label_names = list(self.dataset["train"].features["label"].names)

    def _make_loader(self, *args) -> DataLoader:
        return make_loader(*args)


class TranslationDataModule(_SplitLoaders):
    """Sentence-pair batches plus what validation BLEU needs: each validation row's source and the
    references of every unique source (all its translations in the split)."""

    columns = ("source_ids", "target_ids")

    def __init__(self, tokenized: Path, batch_size: int, seed: int, num_workers: int = 0):
        super().__init__(batch_size, seed, num_workers)
        from rnnlab.data.pairs import group_references
        from rnnlab.data.prepare import load_tokenized_pairs

        self.dataset, self.tokenizers = load_tokenized_pairs(Path(tokenized))
        validation = self.dataset["validation"]
        self.val_keys, _, self.val_references = group_references(validation["source"], validation["target"])

    def _make_loader(self, *args) -> DataLoader:
        return make_pair_loader(*args)
