"""Named-entity recognition (token tagging): a BIO tag per token from word vectors and a character CNN, a
recurrent encoder (bidirectional or not) and a softmax or CRF output layer; scored by entity-level
precision, recall and F1 (seqeval)."""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.config import CELL_SCHEMA, EMBEDDING_MODES, choice, int_in, number_in
from rnnlab.errors import ConfigError
from rnnlab.tasks.base import Built, TaskFamily


class NerFamily(TaskFamily):
    name = "ner"
    explorer_tab = "rnnlab.tasks.ner.explorer_tab:NerTab"
    description = "named-entity recognition (token tagging)"
    monitors = {"val_f1": "max", "val_loss": "min"}
    compare_metrics = ("test_f1", "val_f1")
    predict_example = "I saw Taylor Swift in New York"
    data_module = "rnnlab.tasks.ner.data"
    data_keys = ("tagging",)
    model_schema = {
        **CELL_SCHEMA, "embedding_mode": choice(*EMBEDDING_MODES), "bidirectional": choice(True, False),
        "residual": choice(True, False), "hidden_size": int_in(1, 8192), "num_layers": int_in(1, 16),
        "dropout": number_in(0.0, 0.95), "embedding_dropout": number_in(0.0, 0.95),
        "word_dropout": number_in(0.0, 0.95), "output": choice("softmax", "crf"),
        "char_encoder": choice("cnn", "none"), "char_dim": int_in(1, 1024), "char_highway": int_in(0, 8),
        "max_word_chars": int_in(3, 200),
    }

    def validate(self, cfg: DictConfig) -> None:
        from rnnlab.models.choices import check_filters

        if cfg.model.char_encoder == "cnn":
            check_filters(OmegaConf.to_container(cfg.model.char_filters), int(cfg.model.max_word_chars),
                          "ner.model.char_filters")
        if cfg.tokenizer.kind != "word" or cfg.tokenizer.split_punctuation:
            raise ConfigError("ner.tokenizer: a tagger needs one id per given token: kind=word, "
                              "split_punctuation=false (conf/tokenizer/ner_word.yaml)")

    def build(self, cfg: DictConfig) -> Built:
        from rnnlab.data.prepare import embeddings_dir, load_matrix, tokenized_dir
        from rnnlab.tasks.ner.module import TaggerModule, TaggingDataModule

        data = TaggingDataModule(tokenized_dir(cfg), int(cfg.optim.batch_size), int(cfg.seed),
                                 int(cfg.trainer.num_workers),
                                 int(cfg.model.max_word_chars) if cfg.model.char_encoder == "cnn" else None,
                                 int(cfg.tokenizer.max_length))
        matrix = load_matrix(embeddings_dir(cfg), data.tokenizer.get_vocab_size())
        module = TaggerModule(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optim),
                              vocab_size=matrix.shape[0], embedding_dim=matrix.shape[1], tag_names=data.tag_names,
                              embeddings=matrix)
        info = {"vocab_size": int(matrix.shape[0]), "embedding_dim": int(matrix.shape[1]),
                "tag_names": data.tag_names}
        return Built(data, module, info, ["tokenizer.json"])

    def evaluate(self, cfg: DictConfig, model_dir: Path, metrics_path: Path, plots_dir: Path,
                 log_to_mlflow: bool = True) -> dict:
        from rnnlab.data.prepare import tokenized_dir
        from rnnlab.tasks.ner.evaluate import evaluate

        return evaluate(tokenized_dir(cfg), model_dir, metrics_path, plots_dir, log_to_mlflow)

    def describe_metrics(self, m: dict) -> str:
        return (f"entity F1 {m['f1']:.4f}, precision {m['precision']:.4f}, recall {m['recall']:.4f} "
                f"({m['entities']} entities in {m['sentences']} sentences)")

    def write_report(self, cfg: DictConfig, variants: list[str], folders: dict[str, Path], out: Path,
                     stats: dict, notes: list[str]) -> list[dict]:
        from rnnlab.tasks.ner.report import write_report

        return write_report(cfg.data.name, variants, folders["metrics"], folders["models"], out, stats, notes=notes)

    def describe_row(self, row: dict) -> str:
        return f"{row['variant']:>24}  entity F1 {row['f1']:.4f}  precision {row['precision']:.4f}  recall {row['recall']:.4f}"

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--tags", action="store_true",
                            help="also print every token with its tag and the tag's probability")

    def load_predictor(self, model_dir: Path):
        from rnnlab.tasks.ner.evaluate import load_tagger

        return load_tagger(model_dir)

    def predict_each(self, model, inputs: list[str], args: argparse.Namespace) -> list[list[str]]:
        from rnnlab.tasks.ner.evaluate import tag_texts

        groups = []
        for result in tag_texts(model, inputs):
            found = "  ".join(f"{kind}: {words} (tokens {a}-{b})" for kind, a, b, words in result["entities"])
            lines = [found or "(no entities)"]
            if args.tags:
                lines += [f"  {i}\t{token}\t{tag}\t{probs[tag]:.3f}" for i, (token, tag, probs) in
                          enumerate(zip(result["tokens"], result["tags"], result["probabilities"]))]
            groups.append(lines)
        return groups


FAMILY = NerFamily()
