"""Adding a task family needs no edit of shared code: a throw-away family, defined and registered in this
test only, runs through the shared stages (download, tokenize, embed, train, evaluate, report) and the
shared validation, tracking and checkpointing, exactly as the shipped families do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from torch import nn

from rnnlab import tasks
from rnnlab.config import choice, compose, family_view, int_in, validate
from rnnlab.data.datamodule import SplitDataModule
from rnnlab.errors import ConfigError
from rnnlab.io import atomic_dir, read_json, write_json
from rnnlab.tasks.base import Built, TaskFamily

pytestmark = pytest.mark.slow
VOCAB = 12  # ids 2..11 are words; a sequence is "positive" when it holds word 7


def _sequences(n: int, seed: int) -> tuple[list[list[int]], list[int]]:
    rng = np.random.default_rng(seed)
    ids = [list(rng.integers(2, VOCAB, size=int(rng.integers(3, 9)))) for _ in range(n)]
    return [[int(i) for i in s] for s in ids], [int(7 in s) for s in ids]


def _collate(items):
    index, ids, labels = zip(*items)
    width = max(len(s) for s in ids)
    padded = torch.tensor([list(s) + [0] * (width - len(s)) for s in ids])
    return {"ids": padded, "labels": torch.tensor(labels), "index": torch.tensor(index)}


class ToyData(SplitDataModule):
    columns = ("ids", "label")
    collate = staticmethod(_collate)

    def __init__(self, folder: Path, batch_size: int, seed: int):
        super().__init__(batch_size, seed)
        from datasets import load_from_disk

        self.dataset = load_from_disk(str(folder / "dataset"))


class BagOfWords(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, dim, padding_idx=0)
        self.head = nn.Linear(dim, 2)

    def forward(self, ids):
        return self.head(self.embedding(ids).max(1).values)  # (batch, 2)


class ToyModule(pl.LightningModule):
    def __init__(self, dim: int, lr: float):
        super().__init__()
        self.model, self.lr = BagOfWords(dim), lr

    @staticmethod
    def batch_tokens(batch):
        return int((batch["ids"] > 0).sum())

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.model(batch["ids"]), batch["labels"])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["labels"]))
        return loss

    def validation_step(self, batch, batch_idx):
        acc = (self.model(batch["ids"]).argmax(-1) == batch["labels"]).float().mean()
        self.log("val_acc", acc, on_epoch=True, batch_size=len(batch["labels"]))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class ToyFamily(TaskFamily):
    name = "toy"
    monitors = {"val_acc": "max"}
    compare_metrics = ("test_acc", "val_acc")
    tokenizer_nodes = ()
    model_schema = {"pooling": choice("max"), "dim": int_in(1, 64)}

    def download(self, cfg, out):
        from datasets import Dataset, DatasetDict

        splits = {name: _sequences(n, seed) for name, n, seed in (("train", 200, 0), ("validation", 60, 1),
                                                                  ("test", 60, 2))}
        stats = {"counts": {name: len(s[0]) for name, s in splits.items()}, "seconds": 0.0}
        with atomic_dir(out) as tmp:
            DatasetDict({name: Dataset.from_dict({"ids": ids, "label": labels})
                         for name, (ids, labels) in splits.items()}).save_to_disk(str(tmp / "dataset"))
            write_json(tmp / "stats.json", stats)
        return stats

    def tokenize(self, cfg, raw, out):  # the ids are the tokens: copy the data set over
        import shutil

        with atomic_dir(out) as tmp:
            shutil.copytree(Path(raw) / "dataset", tmp / "dataset")
            write_json(tmp / "stats.json", {"vocab_size": VOCAB})
        return {"vocab_size": VOCAB, "tokens_per_second": 0}

    def embed(self, cfg, tokenized, out):
        with atomic_dir(out) as tmp:
            write_json(tmp / "coverage.json", {"vocab_size": VOCAB})
        return {"vocab_found": 0, "vocab_size": VOCAB, "embeddings": "none", "train_token_coverage": 0.0,
                "seconds": 0.0}

    def build(self, cfg):
        from rnnlab.data.prepare import tokenized_dir

        data = ToyData(tokenized_dir(cfg), int(cfg.optim.batch_size), int(cfg.seed))
        return Built(data, ToyModule(int(cfg.model.dim), float(cfg.optim.lr)), {"vocab_size": VOCAB})

    def evaluate(self, cfg, model_dir, metrics_path, plots_dir, log_to_mlflow=True):
        from rnnlab.data.prepare import tokenized_dir
        from rnnlab.io import load_weights

        model = BagOfWords(int(read_json(Path(model_dir) / "model.json")["model"]["dim"]))
        load_weights(Path(model_dir) / "model.pt", model)
        data = ToyData(tokenized_dir(cfg), 64, 0)
        correct = total = 0
        with torch.no_grad():
            for batch in data.loader("test", shuffle=False):
                correct += int((model(batch["ids"]).argmax(-1) == batch["labels"]).sum())
                total += len(batch["labels"])
        metrics = {"accuracy": correct / total, "n": total}
        with atomic_dir(plots_dir) as tmp:
            write_json(tmp / "details.json", metrics)
        write_json(metrics_path, metrics)
        return metrics

    def write_report(self, cfg, variants, folders, out, stats, notes):
        from rnnlab.io import write_text
        from rnnlab.reporting.report import collect, markdown_table

        rows = collect(variants, folders["metrics"], folders["models"])
        write_text(out, "\n".join(["# toy", *markdown_table(["variant", "accuracy"],
                                                            [[r["variant"], f"{r['accuracy']:.3f}"] for r in rows]),
                                   *notes]))
        return rows


@pytest.fixture
def toy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    family = tasks.register(ToyFamily())
    cfg = compose([f"tracking.tracking_uri=sqlite:///{tmp_path}/mlruns.db",
                   f"tracking.artifact_location={tmp_path}/mlartifacts"])
    OmegaConf.set_struct(cfg, False)
    # The family's subtree, as conf/toy/default.yaml would give it.
    cfg.toy = OmegaConf.create({
        "data": {"name": "bags", "source": "package", "split": {"seed": 0}, "train_epochs": 4},
        "model": {"pooling": "max", "dim": 8},
        "optim": OmegaConf.to_container(cfg.classify.optim),
        "trainer": {**OmegaConf.to_container(cfg.classify.trainer), "max_epochs": 4, "progress_bar": False},
        "monitor": "val_acc",
        "tracking": {"experiment_name": "rnnlab-toy-bags", "registered_model": "rnnlab-toy-bags"},
        "grid": {"pooling": ["max"]},
    })
    cfg.toy.optim.lr = 0.05
    yield cfg
    tasks.unregister(family.name)


def test_a_new_family_runs_through_every_shared_stage(toy, tmp_path):
    from rnnlab import stages

    view = family_view(toy, "toy")
    assert view.model.dim == 8 and view.tracking.experiment_name == "rnnlab-toy-bags"
    validate(view)
    for stage in (stages.download, stages.tokenize, stages.embed):
        stage(view)
    model_dir = stages.model_dir(view)
    view.out_dir, view.checkpoint_dir = str(model_dir), str(tmp_path / "checkpoints" / "toy")
    best = stages.train(view)
    info = read_json(model_dir / "model.json")
    assert info["family"] == "toy" and info["config"]["toy"]["model"]["dim"] == 8
    summary = read_json(model_dir / "train_summary.json")
    assert summary["epochs_run"] == 4 and summary["train_tokens_per_second"] > 0
    assert best == pytest.approx(summary["best_val_acc"]) and best > 0.8  # "holds word 7" is easy to learn
    stages.evaluate(view)
    metrics = json.loads((tmp_path / "metrics" / "toy" / "bags" / "max.json").read_text())
    assert metrics["n"] == 60 and metrics["accuracy"] > 0.8
    stages.report(view)
    report = (tmp_path / "reports" / "toy" / "bags.md").read_text()
    assert "| max |" in report and "alias `champion`" in report

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns.db")
    run = client.get_run(summary["mlflow"]["run_id"])
    assert run.data.params["toy.model.dim"] == "8" and run.data.params["family"] == "toy"
    assert run.data.tags["family"] == "toy" and run.info.status == "FINISHED"
    assert client.get_model_version_by_alias("rnnlab-toy-bags", "champion").run_id == run.info.run_id


def test_a_new_family_gets_the_shared_checks(toy):
    toy.toy.model.dim = 1000
    with pytest.raises(ConfigError, match=r"toy\.model\.dim=1000 is out of range"):
        validate(family_view(toy, "toy"))
    toy.toy.model.dim = 8
    toy.toy.grid.pooling = ["mean"]
    with pytest.raises(ConfigError, match=r"toy\.grid\.pooling contains 'mean'"):
        validate(family_view(toy, "toy"))
