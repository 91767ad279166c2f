"""Language model (next-word prediction): a word-level RNN/LSTM/GRU language model trained with truncated
back-propagation through time over contiguous streams (WikiText-2 by default), scored by perplexity, used
to rank next words and to sample continuations."""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.config import CELL_SCHEMA, EMBEDDING_MODES, check_group, choice, int_in, number_in
from rnnlab.errors import ConfigError
from rnnlab.models.choices import OUTPUT_LAYERS, check_adaptive_cutoffs
from rnnlab.tasks.base import Built, TaskFamily


def add_training_text(data, raw: Path, column: str) -> dict:
    """Append the *training* split of a classification data set's download output (`raw`, e.g.
    data/raw/rotten_tomatoes) to the training stream, one line per text: the biLM may read a target task's
    training text, never its validation or test text (those splits are not read at all). Punctuation is split
    off as in WikiText; words outside the corpus's vocabulary are `<unk>`."""
    from rnnlab.data.prepare import load_raw
    from rnnlab.errors import DataError
    from rnnlab.tasks.lm.data import encode_lines

    import numpy as np

    try:
        train = load_raw(raw)["train"]
    except DataError as err:  # not a finished download output, or a damaged one
        raise ConfigError(f"lm.bilm.extra_train_text={raw}: {err} (e.g. `dvc repro classify_download`), or set "
                          "it to null") from None
    if column not in train.column_names:
        raise DataError(f"lm.bilm.extra_train_text={raw}: its train split has no column {column!r} (columns: "
                        f"{train.column_names}); set lm.bilm.extra_text_column")
    from tokenizers.pre_tokenizers import Whitespace

    split = Whitespace()  # punctuation split off words, as the corpus (WikiText) comes
    lines = [" ".join(piece for piece, _ in split.pre_tokenize_str(str(t))) for t in train[column]]
    ids = encode_lines(data.tokenizer, lines).astype(np.int64)
    data.streams["train"] = np.concatenate([data.streams["train"], ids])
    return {"path": str(raw), "split": "train", "lines": len(lines), "tokens": int(ids.size),
            "unk_rate": round(float((ids == 0).mean()), 4)}


class LanguageModelFamily(TaskFamily):
    name = "lm"
    explorer_tab = "rnnlab.tasks.lm.explorer_tab:LanguageModelTab"  # the explorer's page tab
    description = "language model (next-word prediction)"
    monitors = {"val_ppl": "min", "val_loss": "min"}
    compare_metrics = ("test_ppl", "val_ppl")
    predict_example = "the history of the"
    data_module = "rnnlab.tasks.lm.data"
    data_keys = ("corpus",)
    model_schema = {
        **CELL_SCHEMA, "embedding_mode": choice(*EMBEDDING_MODES), "output_layer": choice(*OUTPUT_LAYERS),
        "tie_weights": choice(True, False), "locked_dropout": choice(True, False),
        "embedding_dim": int_in(1, 8192), "hidden_size": int_in(1, 8192), "num_layers": int_in(1, 16),
        "dropout": number_in(0.0, 0.95), "embedding_dropout": number_in(0.0, 0.95),
        "bidirectional": choice(True, False), "residual": choice(True, False),
        "token_layer": choice("word", "chars", "word+chars"), "char_dim": int_in(1, 1024),
        "char_highway": int_in(0, 8), "max_word_chars": int_in(3, 200),
    }
    stream_schema = {"bptt": int_in(2, 100000), "eval_bptt": int_in(2, 100000), "variable": choice(True, False),
                     "eval_batch_size": int_in(1, 65536)}
    data_schema = {"max_lines_per_split": int_in(1, 10**9, optional=True)}

    def validate(self, cfg: DictConfig) -> None:
        check_group(cfg.stream, "lm.stream", self.stream_schema)
        check_group(cfg.data, "lm.data", self.data_schema)
        if cfg.data.get("max_examples_per_split") is not None:
            raise ConfigError("lm.data.max_examples_per_split: a language-model corpus is capped in lines; use "
                              "lm.data.max_lines_per_split")
        if cfg.tokenizer.get("lowercase"):
            raise ConfigError("lm.tokenizer.lowercase=true is not supported: the vocabulary keeps the corpus's case "
                              "(published WikiText perplexities do); lower-case the text files and use source=local")
        model = cfg.model
        if model.tie_weights and model.output_layer != "full":
            raise ConfigError("lm.model.tie_weights=true shares the embedding with a full softmax's output matrix; "
                              "the adaptive softmax has none. Set lm.model.output_layer=full or tie_weights=false")
        if model.tie_weights and model.embedding_mode == "frozen":
            raise ConfigError("lm.model.tie_weights=true with embedding_mode=frozen would freeze the output matrix "
                              "too; use embedding_mode=finetune or random, or tie_weights=false")
        if model.output_layer == "adaptive":
            check_adaptive_cutoffs(OmegaConf.to_container(model.adaptive_cutoffs) if model.adaptive_cutoffs else [],
                                   int(cfg.tokenizer.max_vocab_size), "lm.tokenizer.max_vocab_size")
        if model.bidirectional:
            unsupported = [k for k, off in (("tie_weights", False), ("locked_dropout", False)) if model[k] != off]
            if unsupported:
                raise ConfigError(f"lm.model.bidirectional=true (the ELMo-style biLM) does not support "
                                  f"{', '.join(f'lm.model.{k}=true' for k in unsupported)}; set them to false")
            if model.cell == "rnn":
                raise ConfigError("lm.model.bidirectional=true takes cell=lstm or gru (ELMo's layers are LSTMs)")
            from rnnlab.models.choices import check_filters

            check_filters(OmegaConf.to_container(model.char_filters), int(model.max_word_chars), "lm.model.char_filters")
        elif model.token_layer != "word":
            raise ConfigError(f"lm.model.token_layer={model.token_layer} (a character CNN) is a biLM option: set "
                              "lm.model.bidirectional=true, or token_layer=word")

    def build(self, cfg: DictConfig) -> Built:
        from rnnlab.data.prepare import embeddings_dir, load_matrix, tokenized_dir
        from rnnlab.tasks.lm.data import TOKENIZER_FILE
        from rnnlab.tasks.lm.module import LMModule, StreamDataModule

        stream = cfg.stream
        data = StreamDataModule(tokenized_dir(cfg), int(cfg.optim.batch_size), int(stream.eval_batch_size),
                                int(stream.bptt), int(stream.eval_bptt), bool(stream.variable), int(cfg.seed),
                                bool(cfg.model.bidirectional))
        vocab = data.tokenizer.get_vocab_size()
        model = cfg.model
        extra = None
        if model.bidirectional and cfg.get("bilm") and cfg.bilm.get("extra_train_text"):
            extra = add_training_text(data, Path(str(cfg.bilm.extra_train_text)), str(cfg.bilm.extra_text_column))
        if model.output_layer == "adaptive":  # against the real vocabulary (a small corpus has a small one)
            check_adaptive_cutoffs(OmegaConf.to_container(model.adaptive_cutoffs) if model.adaptive_cutoffs else [],
                                   vocab, f"the vocabulary size of {tokenized_dir(cfg)}")
        reads_words = not model.bidirectional or "word" in str(model.token_layer).split("+")  # else: chars alone
        matrix = load_matrix(embeddings_dir(cfg), vocab) if model.embedding_mode != "random" and reads_words else None
        if matrix is not None and matrix.shape[1] != int(model.embedding_dim):
            raise ConfigError(f"lm.model.embedding_mode={model.embedding_mode} starts from {cfg.embeddings.name}, "
                              f"{matrix.shape[1]}-d, but lm.model.embedding_dim={model.embedding_dim}: set "
                              f"lm.model.embedding_dim={matrix.shape[1]}, or embedding_mode=random")
        words = None
        if model.bidirectional and model.token_layer != "word":  # the character CNN spells the vocabulary
            words = [""] * vocab
            for word, i in data.tokenizer.get_vocab().items():
                words[i] = word
        module = LMModule(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optim), vocab, matrix, words)
        info = {"vocab_size": vocab, "embedding_dim": int(model.embedding_dim),
                "stream": OmegaConf.to_container(stream)}
        if model.bidirectional:  # what a consumer of the frozen biLM needs to embed its own words alike
            info["token_embeddings"] = OmegaConf.to_container(cfg.embeddings)
            info["extra_train_text"] = extra
        return Built(data, module, info, [TOKENIZER_FILE])

    def evaluate(self, cfg: DictConfig, model_dir: Path, metrics_path: Path, plots_dir: Path,
                 log_to_mlflow: bool = True) -> dict:
        from rnnlab.data.prepare import tokenized_dir
        from rnnlab.tasks.lm.evaluate import evaluate

        return evaluate(tokenized_dir(cfg), model_dir, metrics_path, plots_dir, int(cfg.stream.eval_batch_size),
                        int(cfg.stream.eval_bptt), list(cfg.prompts), log_to_mlflow)

    def describe_metrics(self, m: dict) -> str:
        both = (f" (forward {m['test_ppl_forward']:.1f}, backward {m['test_ppl_backward']:.1f})"
                if "test_ppl_forward" in m else "")
        return (f"perplexity validation {m['val_ppl']:.1f}, test {m['test_ppl']:.1f}{both} "
                f"({m['test_tokens']:,} test tokens, {m['vocab_size']:,} words)")

    def write_report(self, cfg: DictConfig, variants: list[str], folders: dict[str, Path], out: Path,
                     stats: dict, notes: list[str]) -> list[dict]:
        from rnnlab.tasks.lm.report import write_report

        return write_report(cfg.data.name, variants, folders["metrics"], folders["models"], folders["plots"], out,
                            stats, notes=notes)

    def describe_row(self, row: dict) -> str:
        return f"{row['variant']:>16}  perplexity validation {row['val_ppl']:.1f}  test {row['test_ppl']:.1f}"

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--top-k", type=int, default=None,
                            help="next words listed (default 10); with --generate: sample among the k most likely "
                                 "(default 0 = all)")
        parser.add_argument("--generate", type=int, default=None, metavar="N", help="sample N words after the prompt")
        parser.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 1)")
        parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass (default 1 = off)")
        parser.add_argument("--seed", type=int, default=None, help="sampling seed (default 0; same seed, same text)")

    def load_predictor(self, model_dir: Path):
        from rnnlab.tasks.lm.evaluate import load_lm

        return load_lm(model_dir)

    def predict_each(self, model, inputs: list[str], args: argparse.Namespace) -> list[list[str]]:
        from rnnlab.errors import DataError
        from rnnlab.tasks.lm.evaluate import generate, load_lm, next_words

        sampling = {"--temperature": args.temperature, "--top-p": args.top_p, "--seed": args.seed}
        if args.generate is None and any(v is not None for v in sampling.values()):
            given = ", ".join(k for k, v in sampling.items() if v is not None)
            raise DataError(f"{given} only apply to sampling: add --generate N (N words), or leave them out to list "
                            "the most likely next words")
        lm = load_lm(Path(model)) if isinstance(model, (str, Path)) else model
        lines = []
        for prompt in inputs:
            if args.generate is not None:
                text = generate(lm, prompt, args.generate, 1.0 if args.temperature is None else args.temperature,
                                args.top_k or 0, 1.0 if args.top_p is None else args.top_p,
                                0 if args.seed is None else args.seed)
                lines.append([f"{prompt.strip()} {text}"])
            else:
                ranked = next_words(lm, prompt, args.top_k if args.top_k is not None else 10)
                lines.append(["  ".join(f"{word} {p:.4f}" for word, p in ranked)])
        return lines


FAMILY = LanguageModelFamily()
