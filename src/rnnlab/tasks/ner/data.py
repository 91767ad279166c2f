"""Data hooks of the tagging family: sentences of (token, BIO tag) from a package file, the hub or local CoNLL
files; deterministic train/validation/test splits when the source has only a training split (WNUT-16 as
packaged); a case-keeping word vocabulary of the training tokens (one id per token); GloVe rows for it.

CoNLL layout: one token per line, its tag in the last whitespace-separated column (so two-column files and
CoNLL-2003's four columns both read), a blank line between sentences, `-DOCSTART-` lines skipped. Tags must
be BIO: `O`, `B-<type>` or `I-<type>`; anything else is an error naming the file and the line."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rnnlab.data.prepare import (SPLITS, STAGE_KEYS, embed_tokenized, fingerprint, length_stats, load_raw,
                                 load_tokenized, quiet_datasets, save_tokenized, without_timings)
from rnnlab.errors import ConfigError, DataError
from rnnlab.io import atomic_dir, read_utf8, write_json

TAG = re.compile(r"^(O|[BI]-\S+)$")
FIELD_SEPARATOR = re.compile(r"[ \t]+")  # columns are split on spaces and tabs only (a token may hold U+00A0)
Sentences = list[tuple[list[str], list[str]]]  # (tokens, tags) per sentence


# --------------------------------------------------------------------------- reading


def parse_conll(text: str, origin: str) -> Sentences:
    """Sentences of a CoNLL text (token first, tag last on each line; blank lines end sentences)."""
    sentences, tokens, tags = [], [], []
    for number, line in enumerate(text.split("\n"), 1):  # (only \n ends a line; other separators are text)
        fields = FIELD_SEPARATOR.split(line.strip(" \t\r"))
        fields = fields if fields != [""] else []
        if not fields:
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if len(fields) < 2:
            raise DataError(f"{origin} line {number}: {line.strip()!r} has a token but no tag; each line needs "
                            "the token first and its BIO tag last, separated by whitespace (a tab)")
        if not TAG.match(fields[-1]):
            raise DataError(f"{origin} line {number}: tag {fields[-1]!r} is not a BIO tag; expected O, B-<type> "
                            "or I-<type> (convert IOBES or bare type tags to BIO first)")
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def to_bio(tags: list[str]) -> tuple[list[str], int]:
    """The tags with every I-X that continues no X entity (IOB1's entity start, or a stray tag) written as
    B-X, which is how conlleval and seqeval read it anyway; returns (tags, how many were rewritten). A CRF
    with BIO constraints could not otherwise score such a gold sequence."""
    out, changed, previous = [], 0, "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag, changed = "B-" + tag[2:], changed + 1
        out.append(tag)
        previous = tag
    return out, changed


def _read_conll_file(path: Path, what: str) -> Sentences:
    if not path.is_file():
        raise DataError(f"{what}: {path} does not exist; point it at a CoNLL file (token and tag per line, a "
                        "blank line between sentences)")
    sentences = parse_conll(read_utf8(path, what), str(path))
    if not sentences:
        raise DataError(f"{what}: {path} holds no sentence (no line with a token and a tag)")
    return sentences


def _package_splits(cfg: DictConfig) -> dict[str, Sentences]:
    from rnnlab.data.sources import package_file

    pkg = cfg.data.package
    path = package_file(str(pkg.name), str(pkg.version), str(pkg.file))
    return {"train": _read_conll_file(path, f"{cfg.data.name} ({pkg.name}=={pkg.version})")}


def _local_splits(cfg: DictConfig) -> dict[str, Sentences]:
    local = cfg.data.local
    if not local.get("train"):
        raise ConfigError("ner.data.source=local needs ner.data.local.train (a CoNLL file); validation and test "
                          "are optional (each carved from train when absent)")
    given = [s for s in SPLITS if local.get(s)]
    return {s: _read_conll_file(Path(str(local[s])).expanduser(), f"ner.data.local.{s}") for s in given}


def _hub_splits(cfg: DictConfig) -> dict[str, Sentences]:
    from rnnlab.data.sources import hub_splits

    hub = cfg.data.hub
    splits = hub_splits(hub)
    tokens_col, tags_col = str(hub.tokens_column), str(hub.tags_column)
    out = {}
    for name, ds in splits.items():
        missing = [c for c in (tokens_col, tags_col) if c not in ds.column_names]
        if missing:
            raise DataError(f"hub dataset {hub.id!r} ({name}) has no column {missing[0]!r} (columns: "
                            f"{ds.column_names}); set ner.data.hub.tokens_column / tags_column")
        feature = ds.features[tags_col]
        names = getattr(getattr(feature, "feature", None), "names", None)
        sentences = []
        for i, (tokens, tags) in enumerate(zip(ds[tokens_col], ds[tags_col])):
            if tokens is None or tags is None or len(tokens) != len(tags):
                raise DataError(f"hub dataset {hub.id!r} ({name}) row {i}: {len(tokens or [])} tokens but "
                                f"{len(tags or [])} tags; every token needs exactly one tag")
            if any(not str(t).strip() or FIELD_SEPARATOR.search(str(t)) for t in tokens):
                raise DataError(f"hub dataset {hub.id!r} ({name}) row {i}: an empty token or one holding a space "
                                f"({[str(t) for t in tokens][:12]}); tokens must be single words")
            if tags and not isinstance(tags[0], str):
                if names is None:
                    raise DataError(f"hub dataset {hub.id!r}: column {tags_col!r} holds integer tags without "
                                    "names (no ClassLabel feature); convert it to a local CoNLL file")
                tags = [names[t] for t in tags]
            bad = next((t for t in tags if not TAG.match(str(t))), None)
            if bad is not None:
                raise DataError(f"hub dataset {hub.id!r} ({name}) row {i}: tag {bad!r} is not BIO (O, B-<type>, "
                                "I-<type>)")
            if tokens:
                sentences.append((list(map(str, tokens)), list(map(str, tags))))
        out[name] = sentences
    return out


def carve_splits(sentences: Sentences, seed: int, val_fraction: float, test_fraction: float,
                 missing: tuple[str, ...] = ("validation", "test")) -> dict[str, Sentences]:
    """A seeded permutation of `sentences` cut into train and the `missing` splits (each the given fraction
    of `sentences`); the source's own splits are kept by the caller."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ConfigError(f"ner.data.split.{name}={value}: expected a fraction between 0 and 1")
    n = len(sentences)
    sizes = {s: round(n * (val_fraction if s == "validation" else test_fraction)) for s in missing}
    if n - sum(sizes.values()) < 1 or any(k < 1 for k in sizes.values()):
        raise DataError(f"{n} sentences cannot be split into train/{'/'.join(missing)} with fractions "
                        f"{val_fraction}/{test_fraction}; every split needs at least one sentence")
    order = np.random.default_rng(seed).permutation(n)
    pick = lambda idx: [sentences[i] for i in sorted(idx)]  # noqa: E731 - source order within a split
    out, start = {}, 0
    for split in ("test", "validation"):  # (test first: the same cut as before for the packaged data)
        if split in sizes:
            out[split] = pick(order[start:start + sizes[split]])
            start += sizes[split]
    out["train"] = pick(order[start:])
    return out


def tag_names(splits: dict[str, Sentences]) -> list[str]:
    """O, then for each entity type (sorted) B-type and I-type: the label space of every split."""
    types = sorted({t[2:] for sentences in splits.values() for _, tags in sentences for t in tags if t != "O"})
    return ["O", *(f"{p}-{kind}" for kind in types for p in "BI")]


def entity_counts(sentences: Sentences) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, tags in sentences:
        for t in tags:
            if t.startswith("B-"):
                counts[t[2:]] = counts.get(t[2:], 0) + 1
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------- stages


def download(cfg: DictConfig, out: Path) -> dict:
    """Read the source, split it when it has no validation/test of its own, save a DatasetDict + stats.json."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    quiet_datasets()
    start = time.perf_counter()
    source = str(cfg.data.source)
    readers = {"package": _package_splits, "hub": _hub_splits, "local": _local_splits}
    if source not in readers:
        raise ConfigError(f"ner.data.source={source!r}; allowed: {', '.join(readers)}")
    given = readers[source](cfg)
    provided = sorted(given)
    split = cfg.data.split
    missing = tuple(s for s in ("validation", "test") if s not in given)
    splits = {s: given[s] for s in SPLITS if s in given}
    if missing:  # the source's own splits are kept; the missing ones are carved from its training split
        splits.update(carve_splits(given["train"], int(split.seed), float(split.val_fraction),
                                   float(split.test_fraction), missing))
    rewritten = 0
    for name, sentences in splits.items():
        fixed = [(tokens, *to_bio(tags)) for tokens, tags in sentences]
        splits[name] = [(tokens, tags) for tokens, tags, _ in fixed]
        rewritten += sum(n for *_, n in fixed)
    cap = cfg.data.get("max_examples_per_split")
    if cap:
        splits = {s: v[: int(cap)] for s, v in splits.items()}
    names = tag_names(splits)
    if len(names) < 3:
        raise DataError(f"{cfg.data.name}: no entity tags at all (every tag is O); a tagger needs B-/I- tags")
    features = Features({"tokens": Sequence(Value("string")), "tags": Sequence(ClassLabel(names=names))})
    index = {name: i for i, name in enumerate(names)}
    dataset = DatasetDict({s: Dataset.from_dict({"tokens": [t for t, _ in v], "tags": [[index[x] for x in g]
                                                                                       for _, g in v]},
                                                features=features) for s, v in splits.items()})
    stats = {"dataset": cfg.data.name, "source": source, "split_seed": int(split.seed),
             "fingerprint": fingerprint(cfg, *STAGE_KEYS["download"]), "splits_provided_by_source": provided,
             "i_tags_written_as_b": rewritten,
             "tag_names": names, "counts": {s: len(v) for s, v in splits.items()},
             "tokens": {s: sum(len(t) for t, _ in v) for s, v in splits.items()},
             "entities": {s: entity_counts(v) for s, v in splits.items()}}
    with atomic_dir(out) as tmp:
        dataset.save_to_disk(str(tmp / "dataset"))
        stats["seconds"] = round(time.perf_counter() - start, 3)
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


def word_tokenizer(tok_cfg: DictConfig, train_tokens: list[list[str]]):
    """A word vocabulary of the training tokens (`<pad>`=0, `<unk>`=1); each token is one id."""
    from rnnlab.data.tokenizer import build_tokenizer

    if tok_cfg.kind != "word" or tok_cfg.split_punctuation:
        raise ConfigError("ner.tokenizer: a tagger needs one id per given token: set ner.tokenizer.kind=word and "
                          "ner.tokenizer.split_punctuation=false")
    return build_tokenizer(tok_cfg, (" ".join(tokens) for tokens in train_tokens))


def encode_tokens(tokenizer, sentences: list[list[str]]) -> list[list[int]]:
    """One id per token (tokens are pre-split: a token is never split again)."""
    encoded = tokenizer.encode_batch([list(tokens) for tokens in sentences], is_pretokenized=True,
                                     add_special_tokens=False)
    ids = [e.ids for e in encoded]
    for tokens, row in zip(sentences, ids):
        if len(row) != len(tokens):  # an empty token, or one holding whitespace, would not be one id
            raise DataError(f"the tokens {list(tokens)[:12]} hold an empty token or one with whitespace inside; "
                            "each token must be one non-empty word")
    return ids


def tokenize(cfg: DictConfig, raw: Path, out: Path) -> dict:
    from rnnlab.data.tokenizer import UNK_ID

    raw, out = Path(raw), Path(out)
    quiet_datasets()
    start = time.perf_counter()
    dataset = load_raw(raw)
    tokenizer = word_tokenizer(cfg.tokenizer, dataset["train"]["tokens"])
    stats: dict = {"vocab_size": tokenizer.get_vocab_size(), "splits": {},
                   "fingerprint": fingerprint(cfg, *STAGE_KEYS["tokenize"])}
    encoded, n_tokens = {}, 0
    for split in SPLITS:
        ids = encode_tokens(tokenizer, dataset[split]["tokens"])
        lengths = np.array([len(r) for r in ids])
        flat = np.concatenate([np.asarray(r) for r in ids]) if ids else np.zeros(0)
        stats["splits"][split] = {**length_stats(lengths, int(cfg.tokenizer.max_length)),
                                  "unk_rate": round(float((flat == UNK_ID).mean()), 4)}
        n_tokens += int(lengths.sum())
        encoded[split] = dataset[split].add_column("input_ids", ids)
    stats["tokens_per_second"] = round(n_tokens / max(time.perf_counter() - start, 1e-9))
    stats["tokenizer"] = OmegaConf.to_container(cfg.tokenizer)
    save_tokenized(out, tokenizer, encoded, stats)
    return stats


embed = embed_tokenized  # the embed stage: GloVe rows of the tokenizer's vocabulary
