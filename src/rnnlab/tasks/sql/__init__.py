"""Text to SQL: an English question -> an SQLite query. Built on the sequence-to-sequence family (its
encoder, attention, decoder, greedy and beam search), with literal values copied from the question by a
pointer (or replaced by typed placeholders and put back), scored by running the predicted and the gold query
on the database (execution accuracy) beside exact match, on a random test split and on a test split of
unseen query shapes, phrasings and values."""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.config import CELL_SCHEMA, EMBEDDING_MODES, choice, int_in, number_in
from rnnlab.errors import ConfigError
from rnnlab.models.choices import ATTENTIONS
from rnnlab.tasks.base import Built, TaskFamily

LITERALS = ("copy", "placeholders")
TEST_SPLITS = ("test_random", "test_unseen")


class SqlFamily(TaskFamily):
    name = "sql"
    explorer_tab = "rnnlab.tasks.sql.explorer_tab:SqlTab"
    description = "text to SQL (scored by executing the queries)"
    monitors = {"val_exact": "max", "val_loss": "min"}
    compare_metrics = ("test_unseen_execution", "val_exact")
    predict_example = "how many flights left from JFK ?"
    data_module = "rnnlab.tasks.sql.data"
    data_keys = ("text2sql",)
    tokenizer_nodes = ("tokenizer.source", "tokenizer.target")
    model_schema = {
        "literals": choice(*LITERALS), **CELL_SCHEMA, "attention": choice(*ATTENTIONS),
        "embedding_mode": choice(*EMBEDDING_MODES), "output_layer": choice("full"),
        "bidirectional": choice(True, False), "input_feeding": choice(True, False),
        "context_every_step": choice(True, False), "bridge_with_attention": choice(True, False),
        "attention_scaled": choice(True, False),
        "hidden_size": int_in(1, 8192), "dropout": number_in(0.0, 0.95),
        "encoder_layers": int_in(1, 16), "decoder_layers": int_in(1, 16), "tgt_embedding_dim": int_in(1, 8192),
        "teacher_forcing": number_in(0.0, 1.0), "teacher_forcing_final": number_in(0.0, 1.0, optional=True),
        "label_smoothing": number_in(0.0, 0.0),
        "decoding.beam": int_in(1, 256), "decoding.length_penalty": number_in(0.0, 10.0),
        "decoding.max_length": int_in(1, 10000), "decoding.max_len_a": number_in(0.0, 100.0),
        "decoding.max_len_b": int_in(0, 10000), "decoding.valid_only": choice(True, False),
    }
    data_schema = {"source": choice("package", "local"),
                   "generate.examples": int_in(10, 10**7), "generate.seed": int_in(0, 2**31 - 1),
                   "split.seed": int_in(0, 2**31 - 1), "split.heldout_shapes": number_in(0.0, 0.9),
                   "split.heldout_phrasings": number_in(0.0, 0.9), "split.heldout_values": number_in(0.0, 0.9),
                   "split.val_fraction": number_in(0.01, 0.5), "split.test_fraction": number_in(0.01, 0.5),
                   "split.max_unseen_test": int_in(1, 10**7), "query.timeout_s": number_in(0.01, 600.0),
                   "query.max_rows": int_in(1, 10**7),
                   "max_examples_per_split": int_in(1, 10**9, optional=True)}

    def validate(self, cfg: DictConfig) -> None:
        from rnnlab.config import check_group

        check_group(cfg.data, "sql.data", self.data_schema)
        local = cfg.data.get("local") or {}
        if cfg.data.source == "local" and bool(local.get("tables")) == bool(local.get("train")):
            raise ConfigError("sql.data.source=local needs exactly one of sql.data.local.tables (a folder of the "
                              "five tables: questions are generated) and sql.data.local.train (Spider-format pairs, "
                              "with local.test and local.database)")
        model = cfg.model
        if model.input_feeding and model.attention == "none":
            raise ConfigError("sql.model.input_feeding=true needs attention (it feeds the attentional vector); "
                              "set sql.model.attention to additive, dot or general, or input_feeding=false")
        if model.attention == "dot" and model.bidirectional:
            raise ConfigError("sql.model.attention=dot scores decoder states (hidden_size) against encoder outputs "
                              "2*hidden_size wide when sql.model.bidirectional=true. Use attention=general or "
                              "additive, or bidirectional=false")
        for node in self.tokenizer_nodes:
            tok = OmegaConf.select(cfg, node)
            if tok.kind != "word" or tok.split_punctuation or tok.lowercase:
                raise ConfigError(f"sql.{node}: the family splits questions and SQL itself and copies values "
                                  "with their case: kind=word, split_punctuation=false, lowercase=false "
                                  "(conf/tokenizer/sql_word.yaml)")

    def build(self, cfg: DictConfig) -> Built:
        from rnnlab.data.prepare import embeddings_dir, load_matrix, raw_dir, tokenized_dir
        from rnnlab.tasks.sql.data import TOKENIZED_FILES, database_path
        from rnnlab.tasks.sql.module import SqlDataModule, SqlModule

        literals = str(cfg.model.literals)
        data = SqlDataModule(tokenized_dir(cfg), literals, int(cfg.optim.batch_size), int(cfg.seed),
                             int(cfg.trainer.num_workers), int(cfg.tokenizer.source.max_length),
                             int(cfg.tokenizer.target.max_length))
        sizes = {side: t.get_vocab_size() for side, t in data.tokenizers.items()}
        matrix = load_matrix(embeddings_dir(cfg), sizes["source"])
        module = SqlModule(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optim),
                           sizes["source"], sizes["target"], matrix)
        info = {"src_vocab_size": sizes["source"], "tgt_vocab_size": sizes["target"],
                "embedding_dim": int(matrix.shape[1]), "max_length": int(cfg.tokenizer.source.max_length),
                "database": str(database_path(raw_dir(cfg)))}
        return Built(data, module, info, list(TOKENIZED_FILES))

    def evaluate(self, cfg: DictConfig, model_dir: Path, metrics_path: Path, plots_dir: Path,
                 log_to_mlflow: bool = True) -> dict:
        from rnnlab.data.prepare import raw_dir, tokenized_dir
        from rnnlab.tasks.sql.evaluate import evaluate

        return evaluate(tokenized_dir(cfg), raw_dir(cfg), model_dir, metrics_path, plots_dir, log_to_mlflow,
                        float(cfg.data.query.timeout_s), int(cfg.data.query.max_rows))

    def describe_metrics(self, m: dict) -> str:
        return (f"execution accuracy random {m['test_random_execution']:.4f}, unseen "
                f"{m['test_unseen_execution']:.4f}; exact match random {m['test_random_exact']:.4f}, unseen "
                f"{m['test_unseen_exact']:.4f} (beam {m['beam']}, valid-only {m['valid_only']})")

    def write_report(self, cfg: DictConfig, variants: list[str], folders: dict[str, Path], out: Path,
                     stats: dict, notes: list[str]) -> list[dict]:
        from rnnlab.tasks.sql.report import write_report

        return write_report(cfg.data.name, variants, folders["metrics"], folders["models"], folders["plots"], out,
                            stats, notes=notes)

    def describe_row(self, row: dict) -> str:
        return (f"{row['variant']:>24}  execution random {row['test_random_execution']:.4f}  unseen "
                f"{row['test_unseen_execution']:.4f}  exact random {row['test_random_exact']:.4f}")

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy; default: the model's)")
        parser.add_argument("--any-sql", action="store_true",
                            help="return the best hypothesis even when it does not compile (default: the model's "
                                 "decoding.valid_only keeps the best one that does)")
        parser.add_argument("--database", type=Path, default=None,
                            help="the SQLite file to run the query on (default: the one the model was trained on)")
        parser.add_argument("--rows", type=int, default=5, help="result rows to print (default 5)")

    def load_predictor(self, model_dir: Path):
        from rnnlab.tasks.sql.evaluate import load_sql_model

        return load_sql_model(model_dir)

    def predict_each(self, model, inputs: list[str], args: argparse.Namespace) -> list[list[str]]:
        from rnnlab.errors import DataError
        from rnnlab.tasks.sql.evaluate import answer_questions

        if args.beam is not None and args.beam < 1:
            raise DataError(f"--beam must be at least 1 (1 = greedy), got {args.beam}")
        if args.rows < 0:
            raise DataError(f"--rows must be 0 or more, got {args.rows}")
        groups = []
        for answer in answer_questions(model, inputs, beam=args.beam, valid_only=False if args.any_sql else None,
                                       database=args.database, max_rows=max(args.rows, 1)):
            lines = [answer["sql"] or "(empty query)"]
            groups.append(lines)
            result = answer["result"]
            if result.error:
                lines.append(f"  (the query fails: {result.error})")
                continue
            lines.append("  " + " | ".join(result.columns))
            lines += ["  " + " | ".join("NULL" if v is None else str(v) for v in row) for row in result.rows[:args.rows]]
            more = "more rows exist" if result.truncated else f"{len(result.rows)} row(s)"
            lines.append(f"  ({more})")
        return groups


FAMILY = SqlFamily()
