"""Decoding speed of a trained translation model: batched beam search against one sentence at a time,
and greedy against beam 5 (with their BLEU on the same sentences, so speed is never bought with quality
unknowingly).

    .venv/bin/python benchmarks/bench_decode.py [--model models/seq2seq/anki_spa_eng/gru-additive]

Uses the pipeline's trained model and test split (`dvc repro` first) and the project's own
`rnnlab.tasks.seq2seq.evaluate.translate_ids`, the function the evaluate stage and the predict CLI call.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/seq2seq/anki_spa_eng/gru-additive")
    ap.add_argument("--tokenized", default="data/tokenized/anki_spa_eng")
    ap.add_argument("--sentences", type=int, default=512, help="test sources decoded in each setting")
    ap.add_argument("--single", type=int, default=64, help="sources decoded one at a time (slow)")
    ap.add_argument("--label", default="current")
    a = ap.parse_args()

    import torch

    from rnnlab.data.tokenizer import detokenize
    from rnnlab.tasks.seq2seq.bleu import corpus_scores
    from rnnlab.tasks.seq2seq.data import group_references, load_tokenized_pairs
    from rnnlab.tasks.seq2seq.evaluate import load_translator, translate_ids

    translator = load_translator(common.ROOT / a.model)
    data, _ = load_tokenized_pairs(common.ROOT / a.tokenized)
    test = data["test"]
    _, first, references = group_references(test["source"][:], test["target"][:])
    unique = list(first)[: a.sentences]  # each test source once, scored against all its references
    source_ids = test["source_ids"][:]
    ids = [source_ids[first[k]] for k in unique]
    refs = [references[k] for k in unique]

    def rate(beam: int, batch: int, sentences: list[list[int]]) -> tuple[float, list]:
        translate_ids(translator, sentences[:batch], beam, batch)  # warm-up
        start = time.perf_counter()
        with torch.inference_mode():
            out, _ = translate_ids(translator, sentences, beam, batch)
        return len(sentences) / (time.perf_counter() - start), out

    figures: dict = {"model": a.model, "sentences": len(ids)}
    bleu = {}
    for beam in (1, 5):
        name = "greedy" if beam == 1 else f"beam{beam}"
        batched, out = rate(beam, 64, ids)
        single, _ = rate(beam, 1, ids[: a.single])
        hyps = [detokenize(translator.target_tokenizer, o) for o in out]
        bleu[name] = round(corpus_scores(hyps, refs)["bleu"], 2)
        figures[name] = {"batch64_sentences_per_second": round(batched, 1),
                         "one_at_a_time_sentences_per_second": round(single, 1),
                         "batched_speedup": round(batched / single, 1), "bleu": bleu[name]}
        print(name, figures[name], flush=True)
    figures["beam5_vs_greedy_time_ratio"] = round(
        figures["greedy"]["batch64_sentences_per_second"] / figures["beam5"]["batch64_sentences_per_second"], 2)
    figures["peak_rss_mib"] = common.peak_rss_mib()
    common.record("decoding", a.label, figures,
                  f"python benchmarks/bench_decode.py --model {a.model} --sentences {a.sentences} "
                  f"--single {a.single} --label {a.label!r}")


if __name__ == "__main__":
    main()
