"""Sequence to sequence: source text -> target text with an encoder-decoder (RNN/LSTM/GRU, attention or
none, teacher forcing, greedy and beam decoding), scored by sacreBLEU and chrF against every reference of
a source. The data config names the two sides and their languages (English -> Spanish by default)."""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.config import CELL_SCHEMA, EMBEDDING_MODES, choice, int_in, number_in
from rnnlab.errors import ConfigError
from rnnlab.models.choices import ATTENTIONS, OUTPUT_LAYERS, UNKNOWN_POLICIES, check_adaptive_cutoffs
from rnnlab.tasks.base import Built, TaskFamily


class Seq2SeqFamily(TaskFamily):
    name = "seq2seq"
    explorer_tab = "rnnlab.tasks.seq2seq.explorer_tab:TranslateTab"  # the explorer's page tab
    description = "sequence to sequence (translation)"
    monitors = {"val_bleu": "max", "val_loss": "min"}
    compare_metrics = ("test_bleu_beam", "val_bleu")
    predict_example = "I like tea ."
    data_module = "rnnlab.tasks.seq2seq.data"
    data_keys = ("languages.source", "languages.target")
    tokenizer_nodes = ("tokenizer.source", "tokenizer.target")
    model_schema = {
        **CELL_SCHEMA, "attention": choice(*ATTENTIONS), "embedding_mode": choice(*EMBEDDING_MODES),
        "output_layer": choice(*OUTPUT_LAYERS), "bidirectional": choice(True, False),
        "input_feeding": choice(True, False), "context_every_step": choice(True, False),
        "bridge_with_attention": choice(True, False), "attention_scaled": choice(True, False),
        "hidden_size": int_in(1, 8192), "dropout": number_in(0.0, 0.95),
        "encoder_layers": int_in(1, 16), "decoder_layers": int_in(1, 16),
        "tgt_embedding_dim": int_in(1, 8192),
        "teacher_forcing": number_in(0.0, 1.0), "teacher_forcing_final": number_in(0.0, 1.0, optional=True),
        "label_smoothing": number_in(0.0, 0.9),
        "decoding.beam": int_in(1, 256), "decoding.length_penalty": number_in(0.0, 10.0),
        "decoding.max_length": int_in(1, 10000), "decoding.max_len_a": number_in(0.0, 100.0),
        "decoding.max_len_b": int_in(0, 10000), "decoding.unknown": choice(*UNKNOWN_POLICIES),
    }
    data_schema = {"max_source_words": int_in(1, 10**6, optional=True),
                   "max_train_pairs": int_in(1, 10**9, optional=True),
                   "max_eval_sources": int_in(1, 10**9, optional=True),
                   "length_test.min_words": int_in(2, 10**4, optional=True),
                   "length_test.max_words": int_in(2, 10**4, optional=True),
                   "length_test.bucket_words": int_in(1, 10**4, optional=True),
                   "length_test.sources_per_bucket": int_in(1, 10**7, optional=True)}

    def validate(self, cfg: DictConfig) -> None:
        from rnnlab.config import check_group

        check_group(cfg.data, "seq2seq.data", self.data_schema)
        if cfg.data.get("length_test") is not None:
            from rnnlab.tasks.seq2seq.data import LengthTest

            LengthTest.from_config(cfg.data.length_test)  # bucket edges and word range
        model = cfg.model
        if model.input_feeding and model.attention == "none":
            raise ConfigError("seq2seq.model.input_feeding=true needs attention (it feeds the attentional vector); "
                              "set seq2seq.model.attention to additive, dot or general, or input_feeding=false")
        if model.attention == "dot" and model.bidirectional:
            raise ConfigError("seq2seq.model.attention=dot scores decoder states (hidden_size) against encoder "
                              "outputs, which are 2*hidden_size wide when seq2seq.model.bidirectional=true. Use "
                              "attention=general (a learned projection) or additive, or set bidirectional=false")
        if model.output_layer == "adaptive":
            if float(model.label_smoothing) > 0:
                raise ConfigError(f"seq2seq.model.output_layer=adaptive with seq2seq.model.label_smoothing="
                                  f"{model.label_smoothing}: label smoothing needs every word's probability, which "
                                  "removes the adaptive softmax's speed-up. Set label_smoothing=0 or output_layer=full")
            check_adaptive_cutoffs(OmegaConf.to_container(model.adaptive_cutoffs) if model.adaptive_cutoffs else [],
                                   int(cfg.tokenizer.target.max_vocab_size), "tokenizer.target.max_vocab_size")

    def build(self, cfg: DictConfig) -> Built:
        from rnnlab.data.prepare import embeddings_dir, load_matrix, tokenized_dir
        from rnnlab.tasks.seq2seq.data import TOKENIZER_FILES
        from rnnlab.tasks.seq2seq.module import PairDataModule, Seq2SeqModule

        data = PairDataModule(tokenized_dir(cfg), int(cfg.optim.batch_size), int(cfg.seed),
                              int(cfg.trainer.num_workers))
        sizes = {side: t.get_vocab_size() for side, t in data.tokenizers.items()}
        matrix = load_matrix(embeddings_dir(cfg), sizes["source"])
        module = Seq2SeqModule(OmegaConf.to_container(cfg.model), OmegaConf.to_container(cfg.optim),
                               sizes["source"], sizes["target"], matrix, data.tokenizers["target"], data.val_keys,
                               data.val_references)
        info = {"src_vocab_size": sizes["source"], "tgt_vocab_size": sizes["target"],
                "embedding_dim": int(matrix.shape[1]), "max_length": int(cfg.tokenizer.source.max_length)}
        return Built(data, module, info, list(TOKENIZER_FILES.values()))

    def evaluate(self, cfg: DictConfig, model_dir: Path, metrics_path: Path, plots_dir: Path,
                 log_to_mlflow: bool = True) -> dict:
        from rnnlab.data.prepare import tokenized_dir
        from rnnlab.tasks.seq2seq.data import LengthTest
        from rnnlab.tasks.seq2seq.evaluate import evaluate

        return evaluate(tokenized_dir(cfg), model_dir, metrics_path, plots_dir, log_to_mlflow,
                        length_test=LengthTest.from_config(cfg.data.get("length_test")))

    def describe_metrics(self, m: dict) -> str:
        return (f"BLEU greedy {m['bleu_greedy']:.2f}, beam{m['beam']} {m['bleu_beam']:.2f}; chrF greedy "
                f"{m['chrf_greedy']:.2f}, beam {m['chrf_beam']:.2f} ({m['sources']} sources)")

    def write_report(self, cfg: DictConfig, variants: list[str], folders: dict[str, Path], out: Path,
                     stats: dict, notes: list[str]) -> list[dict]:
        from rnnlab.tasks.seq2seq.report import write_report

        languages = OmegaConf.to_container(cfg.data.languages) if cfg.data.get("languages") else \
            {"source": "source", "target": "target"}
        return write_report(cfg.data.name, languages, variants, folders["metrics"], folders["models"],
                            folders["plots"], out, stats, notes=notes)

    def describe_row(self, row: dict) -> str:
        return (f"{row['variant']:>16}  BLEU greedy {row['bleu_greedy']:.2f}  beam {row['bleu_beam']:.2f}  "
                f"chrF {row['chrf_beam']:.2f}")

    def add_predict_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy; default: the model's)")
        parser.add_argument("--heatmap", type=Path, default=None, help="write the attention heatmap of one input")
        parser.add_argument("--unknown", choices=UNKNOWN_POLICIES, default=None,
                            help="<unk> in the output: keep it, forbid it in decoding, or copy the most-attended "
                                 "source word (default: the model's decoding.unknown)")

    def load_predictor(self, model_dir: Path):
        from rnnlab.tasks.seq2seq.evaluate import load_translator

        return load_translator(model_dir)

    def predict_each(self, model, inputs: list[str], args: argparse.Namespace) -> list[list[str]]:
        import sys

        from rnnlab.errors import DataError
        from rnnlab.tasks.seq2seq.evaluate import heatmap_for, load_translator, prepare_input, translate

        if args.heatmap is not None:  # checked before any work
            if not args.heatmap.parent.is_dir():  # never creates folders: a typo would scatter files
                raise DataError(f"--heatmap {args.heatmap}: the folder {args.heatmap.parent} does not exist; "
                                "write into an existing folder (e.g. --heatmap heatmap.png)")
            if args.heatmap.suffix.lower() not in (".png", ".pdf", ".svg"):
                raise DataError(f"--heatmap {args.heatmap}: give a .png, .pdf or .svg file name")
            if len(inputs) != 1:
                raise DataError(f"--heatmap draws one input; got {len(inputs)}")
        translator = load_translator(Path(model)) if isinstance(model, (str, Path)) else model
        beam = args.beam if args.beam is not None else int(translator.decoding["beam"])
        if beam < 1:
            raise DataError(f"--beam must be at least 1 (1 = greedy), got {beam}")
        if args.heatmap is not None and translator.model.attention_kind == "none":
            raise DataError("--heatmap needs a model with attention; this one has attention=none")
        source_ids = []
        for text in inputs:
            ids, warning = prepare_input(translator, text)
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
            source_ids.append(ids)
        texts, outputs, attention = translate(translator, inputs, source_ids, beam, getattr(args, "unknown", None),
                                              return_attention=args.heatmap is not None)
        if args.heatmap is not None:
            heatmap_for(translator, source_ids[0], outputs[0], attention[0], inputs[0], args.heatmap)
            print(f"attention heatmap: {args.heatmap}", file=sys.stderr)
        return [[text] for text in texts]


FAMILY = Seq2SeqFamily()
