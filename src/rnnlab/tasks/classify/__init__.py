"""Text classification: one label per text (sentiment, spam, question type), scored by accuracy and
macro-F1. Model: embedding (GloVe) -> recurrent encoder -> pooling (last | mean | max | attention) -> head."""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.config import CELL_SCHEMA, EMBEDDING_MODES, choice, int_in, number_in
from rnnlab.errors import ConfigError
from rnnlab.models.choices import POOLINGS
from rnnlab.tasks.base import Built, TaskFamily


class ClassifyFamily(TaskFamily):
    name = "classify"
    explorer_tab = "rnnlab.tasks.classify.explorer_tab:ClassifyTab"  # the explorer's page tab
    description = "text classification"
    monitors = {"val_acc": "max", "val_f1": "max", "val_loss": "min"}
    compare_metrics = ("test_acc", "val_acc")
    predict_example = "a gripping , beautifully shot film"
    data_module = "rnnlab.tasks.classify.data"
    data_keys = ("local.text_column", "local.label_column")
    model_schema = {
        **CELL_SCHEMA, "pooling": choice(*POOLINGS), "embedding_mode": choice(*EMBEDDING_MODES),
        "bidirectional": choice(True, False), "residual": choice(True, False),
        "hidden_size": int_in(1, 8192), "num_layers": int_in(1, 16), "dropout": number_in(0.0, 0.95),
        "embedding_dropout": number_in(0.0, 0.95), "word_dropout": number_in(0.0, 0.95),
        "contextual": choice("none", "elmo"), "encoder": choice("recurrent", "bag"), "contextual_dropout": number_in(0.0, 0.95),
    }

    def validate(self, cfg: DictConfig) -> None:
        model = cfg.model
        if model.encoder == "bag" and model.pooling == "last":
            raise ConfigError("classify.model.encoder=bag has no last state (no recurrence): set "
                              "classify.model.pooling to mean, max or attention")
        if model.encoder == "bag" and model.contextual != "none":
            raise ConfigError("classify.model.encoder=bag with contextual=elmo is no bag of words: the biLM's "
                              "features depend on word order. Set classify.model.contextual=none")

    def build(self, cfg: DictConfig) -> Built:
        from rnnlab.data.prepare import embeddings_dir, load_matrix, tokenized_dir
        from rnnlab.tasks.classify.module import ClassificationDataModule, ClassifierModule

        data = ClassificationDataModule(tokenized_dir(cfg), int(cfg.optim.batch_size), int(cfg.seed),
                                        int(cfg.trainer.num_workers))
        matrix = load_matrix(embeddings_dir(cfg), data.tokenizer.get_vocab_size())
        contextual, record = None, None
        if cfg.model.get("contextual", "none") == "elmo":
            from rnnlab.models.bilm import contextual_for_vocabulary

            contextual, record = contextual_for_vocabulary(
                Path(str(cfg.model.contextual_encoder)), data.tokenizer.get_vocab(), float(cfg.model.contextual_dropout),
                "classify.model.contextual_encoder")
        module = ClassifierModule(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optim),
                                  vocab_size=matrix.shape[0], embedding_dim=matrix.shape[1],
                                  num_classes=len(data.label_names), embeddings=matrix, contextual=contextual)
        info = {"vocab_size": int(matrix.shape[0]), "embedding_dim": int(matrix.shape[1]),
                "label_names": data.label_names, "max_length": int(cfg.tokenizer.max_length)}
        if record is not None:
            info["contextual"] = record
        return Built(data, module, info, ["tokenizer.json"])

    def evaluate(self, cfg: DictConfig, model_dir: Path, metrics_path: Path, plots_dir: Path,
                 log_to_mlflow: bool = True) -> dict:
        from rnnlab.data.prepare import tokenized_dir
        from rnnlab.tasks.classify.evaluate import evaluate

        return evaluate(tokenized_dir(cfg), model_dir, metrics_path, plots_dir, log_to_mlflow)

    def describe_metrics(self, metrics: dict) -> str:
        return f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f} (n={metrics['n']})"

    def write_report(self, cfg: DictConfig, variants: list[str], folders: dict[str, Path], out: Path,
                     stats: dict, notes: list[str]) -> list[dict]:
        from rnnlab.tasks.classify.report import write_report

        return write_report(self.name, cfg.data.name, variants, folders["metrics"], folders["models"], out, stats,
                            notes=notes)

    def describe_row(self, row: dict) -> str:
        return f"{row['variant']:>16}  accuracy {row['accuracy']:.4f}  macro-F1 {row['macro_f1']:.4f}"

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--no-attention", action="store_true", help="do not print the attention weights")

    def load_predictor(self, model_dir: Path):
        from rnnlab.tasks.classify.evaluate import load_classifier

        return load_classifier(model_dir)

    def predict_each(self, model, inputs: list[str], args: argparse.Namespace) -> list[list[str]]:
        import sys

        from rnnlab.tasks.classify.evaluate import classify_texts

        groups = []
        for result in classify_texts(model, inputs):
            if result["warning"]:
                print(f"warning: {result['warning']}", file=sys.stderr)
            probs = "  ".join(f"{name} {p:.3f}" for name, p in result["probabilities"].items())
            lines = [f"{result['label']}\t{probs}"]
            if result["attention"] is not None and not args.no_attention:
                lines.append("  attention: " + " ".join(f"{word}:{w:.2f}" for word, w in result["attention"]))
            groups.append(lines)
        return groups


FAMILY = ClassifyFamily()
