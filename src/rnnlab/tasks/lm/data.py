"""Data hooks of the language-model family: a corpus of lines (WikiText-2 raw by default) from a package,
the hub or plain local text files, kept in the source's own train/validation/test split; a word-level
vocabulary (Hugging Face `tokenizers`, whitespace-split: WikiText is already tokenised) of the training
words seen at least `min_frequency` times plus `<unk>` and `<eos>`; every split as one stream of ids, one
`<eos>` after each line. With the defaults this is the standard WikiText-2 setup: 33,278 words,
2,088,628 / 217,646 / 245,569 tokens."""

from __future__ import annotations

import gzip
import time
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from rnnlab.data.prepare import SPLITS, STAGE_KEYS, embed_vocabulary, fingerprint, read_stage_output, without_timings
from rnnlab.errors import ConfigError, DataError
from rnnlab.io import atomic_dir, read_json, read_utf8, write_json

UNK, EOS = "<unk>", "<eos>"
UNK_ID, EOS_ID = 0, 1
TOKENIZER_FILE = "tokenizer.json"


# --------------------------------------------------------------------------- download


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"{what}: {path} does not exist. Point lm.data.local.<split> at a plain UTF-8 text file "
                        "(one line of text per line; a .gz file is read too).")
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as err:
            raise DataError(f"{what}: {path} is not a readable gzip file ({err})") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{what}: {path} is not UTF-8 text inside (byte 0x{data[err.start]:02x} at offset "
                            f"{err.start}); convert it to UTF-8") from None
    else:
        text = read_utf8(path, what)
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the newline ending the file ends the last line, it does not start one
        lines.pop()
    return lines


def _package_lines(cfg: DictConfig) -> dict[str, list[str]]:
    from rnnlab.data.sources import package_file

    pkg = cfg.data.package
    return {split: _read_lines(package_file(str(pkg.name), str(pkg.version), f"{pkg.dir}/{pkg.files[split]}"),
                               f"{cfg.data.name} {split}") for split in SPLITS}


def _hub_lines(cfg: DictConfig) -> dict[str, list[str]]:
    from rnnlab.data.sources import hub_splits

    splits = hub_splits(cfg.data.hub)
    missing = [s for s in SPLITS if s not in splits]
    if missing:
        raise DataError(f"hub dataset {cfg.data.hub.id!r} has no {', '.join(missing)} split; a language model needs "
                        "the source's own train/validation/test (use lm.data.source=local with three files)")
    column = str(cfg.data.hub.text_column)
    if column not in splits["train"].column_names:
        raise DataError(f"hub dataset {cfg.data.hub.id!r} has no column {column!r} (columns: "
                        f"{splits['train'].column_names}); set lm.data.hub.text_column")
    return {s: [str(t) for t in splits[s][column]] for s in SPLITS}


def _local_lines(cfg: DictConfig) -> dict[str, list[str]]:
    local = cfg.data.local
    missing = [s for s in SPLITS if not local.get(s)]
    if missing:
        raise ConfigError(f"lm.data.source=local needs lm.data.local.{missing[0]} (a text file): a language model "
                          "is scored on the corpus's own validation and test text. Set "
                          + ", ".join(f"lm.data.local.{s}=PATH" for s in missing))
    return {s: _read_lines(Path(str(local[s])).expanduser(), f"lm.data.local.{s}") for s in SPLITS}


def download(cfg: DictConfig, out: Path) -> dict:
    """The three splits' lines as given (blank lines kept: they are `<eos>` tokens of the stream)."""
    start = time.perf_counter()
    source = str(cfg.data.source)
    lines = {"package": _package_lines, "hub": _hub_lines, "local": _local_lines}[source](cfg)
    cap = cfg.data.get("max_lines_per_split")
    if cap:
        lines = {s: v[: int(cap)] for s, v in lines.items()}
    for split, values in lines.items():
        if not any(line.strip() for line in values):
            raise DataError(f"{cfg.data.name}: the {split} split has no words (0 non-blank lines of {len(values)}); "
                            "a language model needs text in each of train, validation and test")
    stats = {"dataset": cfg.data.name, "source": source, "fingerprint": fingerprint(cfg, *STAGE_KEYS["download"]),
             "counts": {s: len(v) for s, v in lines.items()},
             "words": {s: sum(len(line.split()) for line in v) for s, v in lines.items()}}
    with atomic_dir(out) as tmp:
        for split, values in lines.items():
            (tmp / f"{split}.txt").write_text("\n".join(values) + "\n", encoding="utf-8")
        stats["seconds"] = round(time.perf_counter() - start, 3)
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


def load_lines(raw: Path) -> dict[str, list[str]]:
    raw = Path(raw)
    return read_stage_output(raw, "download", lambda: {s: _read_lines(raw / f"{s}.txt", f"{raw} {s}") for s in SPLITS})


# --------------------------------------------------------------------------- tokenize


def build_vocabulary(train_lines: list[str], min_frequency: int, max_vocab_size: int) -> dict[str, int]:
    """`<unk>`=0, `<eos>`=1, then the training words seen >= min_frequency times, most frequent first (ties in
    first-seen order), at most max_vocab_size entries in all."""
    counts = Counter(word for line in train_lines for word in line.split())
    counts.pop(UNK, None)  # a corpus's own "<unk>" (tokenised WikiText) is our unknown word
    counts.pop(EOS, None)
    kept = [w for w, n in counts.most_common() if n >= min_frequency][: max(max_vocab_size - 2, 0)]
    return {UNK: UNK_ID, EOS: EOS_ID, **{w: i + 2 for i, w in enumerate(kept)}}


def make_tokenizer(vocab: dict[str, int]):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def encode_lines(tokenizer, lines: list[str]) -> np.ndarray:
    """One stream: each line's ids, then `<eos>` (a blank line is a lone `<eos>`, as in WikiText)."""
    encoded = tokenizer.encode_batch(lines)
    parts = []
    for enc in encoded:
        parts.append(np.asarray(enc.ids, dtype=np.int32))
        parts.append(np.array([EOS_ID], dtype=np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def tokenize(cfg: DictConfig, raw: Path, out: Path) -> dict:
    tok = cfg.tokenizer
    if str(tok.kind) != "word":
        raise ConfigError(f"lm.tokenizer.kind={tok.kind}: the language model family reads whitespace-split words "
                          "(its corpora come tokenised); use lm.tokenizer.kind=word")
    start = time.perf_counter()
    lines = load_lines(raw)
    vocab = build_vocabulary(lines["train"], int(tok.min_frequency), int(tok.max_vocab_size))
    tokenizer = make_tokenizer(vocab)
    streams = {split: encode_lines(tokenizer, lines[split]) for split in SPLITS}
    stats: dict = {"vocab_size": len(vocab), "fingerprint": fingerprint(cfg, *STAGE_KEYS["tokenize"]), "splits": {}}
    for split, ids in streams.items():
        unk = int((ids == UNK_ID).sum())
        stats["splits"][split] = {"tokens": int(ids.size), "unk": unk, "unk_rate": round(unk / max(ids.size, 1), 4)}
    with atomic_dir(out) as tmp:
        tokenizer.save(str(tmp / TOKENIZER_FILE))
        for split, ids in streams.items():
            np.save(tmp / f"{split}.npy", ids)
        stats["seconds"] = round(time.perf_counter() - start, 3)
        stats["tokens_per_second"] = round(sum(s.size for s in streams.values()) / max(stats["seconds"], 1e-9))
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


def load_streams(tokenized: Path) -> tuple[dict[str, np.ndarray], object]:
    """(split -> int64 id stream, tokenizer) of a finished tokenize output."""
    from rnnlab.io import load_tokenizer

    tokenized = Path(tokenized)

    def read():
        streams = {s: np.load(tokenized / f"{s}.npy", allow_pickle=False).astype(np.int64) for s in SPLITS}
        return streams, load_tokenizer(tokenized / TOKENIZER_FILE)

    streams, tokenizer = read_stage_output(tokenized, "tokenize", read)
    vocab = tokenizer.get_vocab_size()
    for split, ids in streams.items():
        if ids.ndim != 1 or ids.size < 2 or (ids.size and (ids.min() < 0 or ids.max() >= vocab)):
            raise DataError(f"{tokenized / (split + '.npy')} is not an id stream of this vocabulary ({vocab} words); "
                            "`dvc repro -f -s lm_tokenize` re-creates it")
    return streams, tokenizer


# --------------------------------------------------------------------------- embed


def embed(cfg: DictConfig, tokenized: Path, out: Path) -> dict:
    """The GloVe matrix of the vocabulary (used when lm.model.embedding_mode is frozen or finetune)."""
    streams, tokenizer = load_streams(tokenized)
    stats = read_json(Path(tokenized) / "stats.json")
    if stats.get("vocab_size") != tokenizer.get_vocab_size():
        raise DataError(f"{tokenized} is inconsistent (stats.json and tokenizer.json disagree); re-run lm_tokenize")
    # (row 0, the padding row of the other families, is `<unk>` here: it starts at zero, which suits it)
    return embed_vocabulary(cfg, tokenizer, [streams["train"].tolist()], out)
