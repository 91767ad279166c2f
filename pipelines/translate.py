"""Translate English sentences with a trained model.

    python pipelines/translate.py "I like tea." --model models/translate/anki_spa_eng/gru-additive
    python pipelines/translate.py "Where is the station?" --model ... --beam 1 --heatmap attention.png
    cat sentences.txt | python pipelines/translate.py --model ...      (one sentence per line)

Errors (missing model folder, a model of another task, empty input, only unknown words, non-Latin
script) are printed as `error: ...` and the exit code is 2; over-long input is truncated with a warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnlab.errors import DataError, RnnlabError


def _prepare(translator, sentence: str) -> list[int]:
    from rnnlab.data.tokenizer import UNK_ID
    from rnnlab.training.translation import non_latin_letters

    text = sentence.strip()
    if not text:
        raise DataError("empty input: give an English sentence, e.g. \"I like tea.\"")
    if "\x00" in text or any(not ch.isprintable() for ch in text):
        raise DataError(f"input contains control characters or binary data ({text[:30]!r}); give plain text")
    foreign = non_latin_letters(text)
    if foreign:
        raise DataError(f"input {text[:40]!r} contains non-Latin script ({''.join(foreign[:10])}); "
                        "this model translates English written in Latin letters")
    ids = translator.source_tokenizer.encode(text, add_special_tokens=False).ids
    if not ids or all(i == UNK_ID for i in ids):
        raise DataError(f"none of the words of {text[:60]!r} is in the model's English vocabulary "
                        f"({translator.info['src_vocab_size']:,} words); rephrase with common English words")
    limit = int(translator.info["max_length"])
    if len(ids) > limit:
        print(f"warning: the input has {len(ids)} tokens; the model reads at most {limit}: "
              f"translating the first {limit} only", file=sys.stderr)
        ids = ids[:limit]
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="English -> Spanish with a trained rnnlab model")
    parser.add_argument("sentences", nargs="*", help="sentences to translate (default: read stdin lines)")
    parser.add_argument("--model", required=True, type=Path, help="a folder under models/translate/")
    parser.add_argument("--beam", type=int, default=None, help="beam size (1 = greedy; default: the model's)")
    parser.add_argument("--heatmap", type=Path, default=None, help="write the attention heatmap of one sentence")
    args = parser.parse_args(argv)
    try:
        from rnnlab.data.tokenizer import detokenize
        from rnnlab.training.translation import heatmap_for, load_translator, translate_ids

        translator = load_translator(args.model)
        beam = args.beam if args.beam is not None else int(translator.decoding["beam"])
        if beam < 1:
            raise DataError(f"--beam must be at least 1 (1 = greedy), got {beam}")
        sentences = args.sentences
        if not sentences:
            if sys.stdin.isatty():
                raise DataError("no sentence given: pass one as an argument or pipe lines on stdin")
            raw = sys.stdin.buffer.read()
            try:
                sentences = [line for line in raw.decode("utf-8").splitlines() if line.strip()]
            except UnicodeDecodeError:
                raise DataError("stdin is not UTF-8 text; pipe plain UTF-8 sentences, one per line") from None
            if not sentences:
                raise DataError("stdin held no sentence; pipe one English sentence per line")
        if args.heatmap is not None:
            if len(sentences) != 1:
                raise DataError(f"--heatmap draws one sentence; got {len(sentences)}")
            if translator.model.attention_kind == "none":
                raise DataError("--heatmap needs a model with attention; this one has attention=none")
        source_ids = [_prepare(translator, s) for s in sentences]
        outputs, attention = translate_ids(translator, source_ids, beam, return_attention=args.heatmap is not None)
        for ids in outputs:
            print(detokenize(translator.target_tokenizer, ids))
        if args.heatmap is not None:
            heatmap_for(translator, source_ids[0], outputs[0], attention[0], sentences[0], args.heatmap)
            print(f"attention heatmap: {args.heatmap}", file=sys.stderr)
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
