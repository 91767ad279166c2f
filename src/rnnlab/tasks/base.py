"""The shape every task family has: one object with everything task-specific.

A family subclasses `TaskFamily`, fills in its hooks and registers one instance (a built-in package
`rnnlab.tasks.<name>` exposes it as `FAMILY`). Shared code calls only these hooks:

- configuration: `model_schema` (allowed values and ranges of its `model` group), `tokenizer_nodes`
  (the tokenizer groups it has), `data_keys` (what its data sets hold), `monitors` (validation metrics it can select checkpoints by, with
  their direction), `validate(cfg)` for checks across keys;
- data stages: `download`, `tokenize`, `embed` (each writes one folder atomically);
- training: `build(cfg)` returns the DataModule, the LightningModule and what `model.json` records;
- evaluation and reports: `evaluate`, `describe_metrics`, `write_report`, `describe_row`,
  `compare_metrics` (the score and learning curve a seed comparison uses by default);
- use: `add_predict_arguments` and `predict` (pipelines/predict.py, any family, read from model.json).

Every hook receives the family view of the configuration (`rnnlab.config.family_view`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from rnnlab.config import Schema


@dataclass
class Built:
    """What `TaskFamily.build` returns for one training run."""

    datamodule: Any            # a LightningDataModule
    module: Any                # a LightningModule whose `.model` is the plain nn.Module that is saved
    info: dict                 # entries of model.json needed to rebuild and use the model
    tokenizer_files: list[str] = field(default_factory=list)  # files of the tokenize output copied beside it


class TaskFamily:
    name: str = ""
    description: str = ""
    monitors: dict[str, str] = {}          # validation metric -> "max" | "min"
    model_schema: Schema = {}
    tokenizer_nodes: tuple[str, ...] = ("tokenizer",)
    compare_metrics: tuple[str, str] = ("", "")  # (score, learning curve) of a seed comparison
    # Keys every data set of this family has (conf/data/*.yaml): a data set of another family is refused
    # up front, e.g. translation pairs given to a classifier.
    data_keys: tuple[str, ...] = ()
    # Module whose download/tokenize/embed functions are the data stages (imported when a stage runs,
    # so that looking a family up stays cheap); a family may override the three methods instead.
    data_module: str = ""
    # "module:Class" of the family's tab on the explorer page (rnnlab.explorer.tab.Tab), imported by the
    # explorer only; empty: the page shows the family without one.
    explorer_tab: str = ""
    # One input the family's models answer, logged as the MLflow model's input example (tracking/serving.py).
    predict_example: str = ""

    # ---- configuration
    def validate(self, cfg: DictConfig) -> None:
        """Checks across keys that the schemas cannot express (raise ConfigError)."""

    # ---- data stages
    def _data_stage(self, stage: str):
        if not self.data_module:
            raise NotImplementedError(f"family {self.name!r} sets no data_module and does not define {stage}()")
        import importlib

        return getattr(importlib.import_module(self.data_module), stage)

    def download(self, cfg: DictConfig, out: Path) -> dict:
        return self._data_stage("download")(cfg, out)

    def tokenize(self, cfg: DictConfig, raw: Path, out: Path) -> dict:
        return self._data_stage("tokenize")(cfg, raw, out)

    def embed(self, cfg: DictConfig, tokenized: Path, out: Path) -> dict:
        return self._data_stage("embed")(cfg, tokenized, out)

    # ---- training, evaluation, reports
    def build(self, cfg: DictConfig) -> Built:
        raise NotImplementedError

    def evaluate(self, cfg: DictConfig, model_dir: Path, metrics_path: Path, plots_dir: Path,
                 log_to_mlflow: bool = True) -> dict:
        raise NotImplementedError

    def describe_metrics(self, metrics: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in metrics.items())

    def write_report(self, cfg: DictConfig, variants: list[str], folders: dict[str, Path], out: Path,
                     stats: dict, notes: list[str]) -> list[dict]:
        raise NotImplementedError

    def describe_row(self, row: dict) -> str:
        return str(row)

    # ---- use
    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Options of `pipelines/predict.py` for this family's models."""

    def load_predictor(self, model_dir: Path) -> Any:
        """The model folder loaded once for many `predict_each` calls (the MLflow pyfunc model and a server
        built on it); the default returns the folder, which `predict_each` then loads at every call."""
        return model_dir

    def predict_each(self, model: Any, inputs: list[str], args: argparse.Namespace) -> list[list[str]]:
        """For each input, the lines to print (raise DataError for unusable input). `model` is a model folder
        or what `load_predictor` returned. A family that overrides only `predict` gets it called once per input."""
        if type(self).predict is TaskFamily.predict:
            raise NotImplementedError(f"family {self.name!r} defines neither predict_each() nor predict()")
        return [self.predict(model, [text], args) for text in inputs]

    def predict(self, model_dir: Path, inputs: list[str], args: argparse.Namespace) -> list[str]:
        """The lines `pipelines/predict.py` prints for `inputs`: every input's lines, in order."""
        return [line for lines in self.predict_each(model_dir, inputs, args) for line in lines]
