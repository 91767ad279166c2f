"""Data hooks of the sequence-to-sequence family: sentence pairs (package | hub | local), cleaning,
leakage-free splits, a source and a target tokenizer, GloVe for the source side.

Splits are made over *unique source sentences* (compared after Unicode NFKC, case folding and
whitespace collapsing, i.e. as the source tokenizer sees them): every pair of one source sentence
lands in the same split, so no validation/test source was seen in training. When a source provides
its own validation/test files, training pairs whose source occurs there are removed.
"""

from __future__ import annotations

import re
import time
import unicodedata
from pathlib import Path
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from omegaconf import DictConfig, OmegaConf

from rnnlab.data.prepare import (SPLITS, STAGE_KEYS, embed_vocabulary, encode_split, fingerprint, load_dataset,
                                 load_raw, quiet_datasets, read_stage_output, without_timings)
from rnnlab.data.sources import _get, hub_splits, load_source, package_file, read_table
from rnnlab.errors import ConfigError, DataError
from rnnlab.io import atomic_dir, write_json

_SPACES = re.compile(r"\s+")


@dataclass
class Pairs:
    sources: list[str]
    targets: list[str]

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class RawPairs:
    splits: dict[str, Pairs]
    cleaning: dict[str, int] = field(default_factory=dict)


def source_key(text: str) -> str:
    """The identity of a source sentence for splitting and grouping references."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def clean_pairs(sources: list[Any], targets: list[Any], origin: str, split: str) -> tuple[Pairs, dict]:
    """Collapse whitespace, drop pairs with an empty side, drop exact duplicate pairs."""
    if len(sources) != len(targets):
        raise DataError(f"{origin}: {len(sources)} source sentences but {len(targets)} targets")
    seen: set[tuple[str, str]] = set()
    out = Pairs([], [])
    dropped_empty = dropped_duplicate = 0
    for i, (src, tgt) in enumerate(zip(sources, targets)):
        for side, value in (("source", src), ("target", tgt)):
            if value is not None and not isinstance(value, (str, float)) or (
                    isinstance(value, float) and not np.isnan(value)):
                raise DataError(f"{origin}: split '{split}' row {i} has a {side} of type "
                                f"{type(value).__name__} ({value!r}); both columns must hold text")
        src = _SPACES.sub(" ", src).strip() if isinstance(src, str) else ""
        tgt = _SPACES.sub(" ", tgt).strip() if isinstance(tgt, str) else ""
        if not src or not tgt:
            dropped_empty += 1
            continue
        if (src, tgt) in seen:
            dropped_duplicate += 1
            continue
        seen.add((src, tgt))
        out.sources.append(src)
        out.targets.append(tgt)
    if not out.sources:
        raise DataError(f"{origin}: split '{split}' has no sentence pair with both sides non-empty; "
                        "check the file and the source/target column settings")
    return out, {"empty": dropped_empty, "duplicate": dropped_duplicate}


def parse_anki_tsv(path) -> tuple[list[str], list[str]]:
    """The Anki/Tatoeba file: `english<TAB>spanish<TAB>attribution` per line."""
    sources, targets = [], []
    try:
        text = open(path, encoding="utf-8").read()
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not UTF-8 text ({err}); re-save it as UTF-8") from None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{path} line {number} has no tab-separated translation: {line[:80]!r}; "
                            "expected `source<TAB>target[<TAB>attribution]`")
        sources.append(fields[0])
        targets.append(fields[1])
    return sources, targets


def _columns(cfg: Any) -> tuple[str, str]:
    columns = _get(cfg, "source_column"), _get(cfg, "target_column")
    if not all(columns):
        raise ConfigError("the data config names no source_column / target_column for this source; set both "
                          "(e.g. data.local.source_column=en data.local.target_column=es)")
    return str(columns[0]), str(columns[1])


def _frame_pairs(df: pd.DataFrame, cfg: Any, origin: str) -> tuple[list, list]:
    src_col, tgt_col = _columns(cfg)
    missing = [c for c in (src_col, tgt_col) if c not in df.columns]
    if missing:
        raise DataError(f"{origin}: column(s) {missing} not found; columns found: {list(map(str, df.columns))}. "
                        "Set data.local/hub source_column and target_column.")
    return df[src_col].tolist(), df[tgt_col].tolist()


def _package_pairs(data_cfg: Any) -> tuple[dict[str, tuple[list, list]], str]:
    pkg = _get(data_cfg, "package")
    return {"train": parse_anki_tsv(package_file(str(pkg.name), str(pkg.version), str(pkg.file)))}, \
        f"{pkg.name}=={pkg.version}:{pkg.file}"


def _local_pairs(data_cfg: Any) -> tuple[dict[str, tuple[list, list]], str]:
    local = _get(data_cfg, "local")
    if not _get(local, "train"):
        raise ConfigError("data.source=local needs data.local.train (a .csv/.tsv/.jsonl/.parquet file "
                          "with source and target columns); it is empty")
    return {name: _frame_pairs(read_table(_get(local, name)), local, f"local {name} file")
            for name in SPLITS if _get(local, name)}, "local files"


def _hub_pairs(data_cfg: Any) -> tuple[dict[str, tuple[list, list]], str]:
    hub = _get(data_cfg, "hub")
    splits = hub_splits(hub, f"hub dataset {_get(hub, 'id')!r}")
    return {name: _frame_pairs(ds.to_pandas(), hub, f"hub {hub.id} {name}") for name, ds in splits.items()}, \
        f"hub {hub.id}"


def load_pairs(data_cfg: Any) -> RawPairs:
    """The splits the configured source provides ("train" always), cleaned."""
    raw, origin = load_source(data_cfg, package=_package_pairs, hub=_hub_pairs, local=_local_pairs)
    splits, cleaning = {}, {"empty": 0, "duplicate": 0}
    for name, (sources, targets) in raw.items():
        splits[name], dropped = clean_pairs(sources, targets, origin, name)
        for key in cleaning:
            cleaning[key] += dropped[key]
    return RawPairs(splits, cleaning)


def _filter_length(pairs: Pairs, max_words: int | None) -> Pairs:
    if max_words is None:
        return pairs
    keep = [i for i, s in enumerate(pairs.sources) if source_words(s) <= max_words]
    return Pairs([pairs.sources[i] for i in keep], [pairs.targets[i] for i in keep])


def _take(pairs: Pairs, index) -> Pairs:
    return Pairs([pairs.sources[i] for i in index], [pairs.targets[i] for i in index])


def _keep_sources(pairs: Pairs, keys: set[str], inside: bool) -> Pairs:
    return _take(pairs, [i for i, s in enumerate(pairs.sources) if (source_key(s) in keys) == inside])


def _cap_sources(pairs: Pairs, limit: int | None, rng: np.random.Generator) -> Pairs:
    """Keep every pair of at most `limit` randomly chosen unique sources."""
    keys = sorted({source_key(s) for s in pairs.sources})
    if limit is None or len(keys) <= limit:
        return pairs
    chosen = {keys[i] for i in rng.choice(len(keys), size=limit, replace=False)}
    return _keep_sources(pairs, chosen, True)


LONG_SPLIT = "test_long"  # the held-out longer sentences of the length evaluation (LengthTest)


@dataclass(frozen=True)
class LengthTest:
    """The length evaluation: buckets of `bucket_words` source words (1-3, 4-6, ...) up to `max_words`. Sources
    of `min_words` words or more come from their own held-out split (`test_long`: up to `sources_per_bucket`
    unique sources per bucket, drawn from every pair whatever `max_source_words` is, and removed from every
    other split), shorter ones from the test split. The long split does not depend on `max_source_words`,
    so models trained with different length caps are scored on the same long sentences."""

    min_words: int = 7
    max_words: int = 15
    bucket_words: int = 3
    sources_per_bucket: int = 300

    @classmethod
    def from_config(cls, node: Any) -> "LengthTest | None":
        if node is None:
            return None
        names = ("min_words", "max_words", "bucket_words", "sources_per_bucket")
        missing = [name for name in names if _get(node, name) is None]
        if missing:
            raise ConfigError(f"seq2seq.data.length_test needs {', '.join(names)}; {', '.join(missing)} missing. "
                              "Set them, or seq2seq.data.length_test=null for no length evaluation")
        test = cls(**{name: int(_get(node, name)) for name in names})
        if (test.min_words - 1) % test.bucket_words:
            raise ConfigError(f"seq2seq.data.length_test.min_words={test.min_words} must start a bucket of "
                              f"bucket_words={test.bucket_words} words (1, {1 + test.bucket_words}, "
                              f"{1 + 2 * test.bucket_words}, ...), so no bucket mixes the two sources")
        if test.max_words < test.min_words:
            raise ConfigError(f"seq2seq.data.length_test.max_words={test.max_words} is below min_words="
                              f"{test.min_words}")
        return test

    def bucket(self, words: int) -> str:
        """The bucket label of a source of `words` words ("1-3", "4-6", ...)."""
        low = (max(words, 1) - 1) // self.bucket_words * self.bucket_words + 1
        return f"{low}-{low + self.bucket_words - 1}"

    def buckets(self) -> list[str]:
        return [self.bucket(w) for w in range(1, self.max_words + 1, self.bucket_words)]


def source_words(text: str) -> int:
    """The length of a source sentence as every length setting counts it: whitespace-separated words."""
    return len(text.split())


def _carve_long(train: Pairs, exclude: set[str], test: LengthTest, seed: int) -> set[str]:
    """Unique sources of min_words..max_words words, at most sources_per_bucket per bucket (its own random
    stream: the other splits do not move when these settings change)."""
    rng = np.random.default_rng([seed, test.max_words, test.sources_per_bucket])
    by_bucket: dict[str, set[str]] = {}
    for src in train.sources:
        words = source_words(src)
        key = source_key(src)
        if test.min_words <= words <= test.max_words and key not in exclude:
            by_bucket.setdefault(test.bucket(words), set()).add(key)
    chosen: set[str] = set()
    for bucket in sorted(by_bucket):
        keys = sorted(by_bucket[bucket])
        take = min(len(keys), test.sources_per_bucket)
        chosen.update(keys[i] for i in rng.choice(len(keys), size=take, replace=False))
    return chosen


def make_pair_splits(raw: RawPairs, seed: int, val_fraction: float, test_fraction: float,
                     max_source_words: int | None = None, max_train_pairs: int | None = None,
                     max_eval_sources: int | None = None, max_examples_per_split: int | None = None,
                     length_test: LengthTest | None = None) -> tuple[dict[str, Pairs], dict]:
    """train/validation/test (and test_long with `length_test`) with no shared source sentence; returns
    (splits, facts for stats.json)."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"data.split.{name}={value!r} must be in [0, 1)")
    if float(val_fraction) + float(test_fraction) >= 1.0:
        raise ConfigError("data.split.val_fraction + test_fraction must be below 1 (training needs data)")
    rng = np.random.default_rng(seed)
    long_keys: set[str] = set()
    if length_test is not None:
        provided_keys = {source_key(s) for name in ("validation", "test") if name in raw.splits
                         for s in raw.splits[name].sources}
        long_keys = _carve_long(raw.splits["train"], provided_keys, length_test, seed)
    filtered = {name: _filter_length(p, max_source_words) for name, p in raw.splits.items()}
    if long_keys:  # held out of every other split (a no-op for the others when the cap is below min_words)
        filtered["train"] = _keep_sources(filtered["train"], long_keys, False)
    for name, p in filtered.items():
        if not len(p):
            raise DataError(f"split '{name}' is empty after keeping sources of at most {max_source_words} "
                            "words; raise data.max_source_words or set it to null")
    train = filtered["train"]
    splits: dict[str, Pairs] = {}
    provided = {source_key(s) for name in ("validation", "test") if name in filtered
                for s in filtered[name].sources}
    keys = sorted({source_key(s) for s in train.sources} - provided)  # carve only unseen sources
    order = rng.permutation(len(keys))
    cut_test = round(len(keys) * float(test_fraction)) if "test" not in filtered else 0
    cut_val = round(len(keys) * float(val_fraction)) if "validation" not in filtered else 0
    carved = {"test": {keys[i] for i in order[:cut_test]},
              "validation": {keys[i] for i in order[cut_test:cut_test + cut_val]}}
    for name in ("validation", "test"):
        splits[name] = filtered[name] if name in filtered else _keep_sources(train, carved[name], True)
    held_out = {source_key(s) for name in ("validation", "test") for s in splits[name].sources}
    train = _keep_sources(train, held_out, False)
    removed_leaking = len(filtered["train"]) - len(train) - sum(
        len(splits[n]) for n in ("validation", "test") if n not in filtered)
    if max_train_pairs is not None and len(train) > max_train_pairs:
        train = _take(train, sorted(rng.choice(len(train), size=max_train_pairs, replace=False)))
    splits["train"] = train
    for name in ("validation", "test"):
        splits[name] = _cap_sources(splits[name], max_eval_sources, rng)
    names = list(SPLITS)
    if length_test is not None:
        if not long_keys:
            raise DataError(f"no source sentence of {length_test.min_words}-{length_test.max_words} words is left to hold "
                            "out for the length test; lower seq2seq.data.length_test.min_words, or set "
                            "seq2seq.data.length_test=null to evaluate the test split only")
        splits[LONG_SPLIT] = _keep_sources(raw.splits["train"], long_keys, True)
        names.append(LONG_SPLIT)
    if max_examples_per_split is not None:
        splits = {n: _take(p, range(min(len(p), int(max_examples_per_split)))) for n, p in splits.items()}
    for name, p in splits.items():
        if not len(p):
            raise DataError(f"split '{name}' is empty; lower data.split fractions' rounding effects by "
                            "using more data, or raise val_fraction/test_fraction")
    train_keys = {source_key(s) for s in splits["train"].sources}
    overlap = {n: len(train_keys & {source_key(s) for s in splits[n].sources}) for n in names if n != "train"}
    assert not any(overlap.values()), overlap  # the split's whole point
    facts = {"pairs_after_length_filter": {n: len(p) for n, p in filtered.items()},
             "train_pairs_removed_for_leakage": int(max(removed_leaking, 0)),
             "source_overlap_with_train": overlap}
    if length_test is not None:
        unique_long = {source_key(x): x for x in splits[LONG_SPLIT].sources}.values()
        counts = Counter(length_test.bucket(source_words(x)) for x in unique_long)
        facts["length_test"] = {"settings": asdict(length_test), "test_long_sources_per_bucket": {
            bucket: counts[bucket] for bucket in length_test.buckets() if bucket in counts}}
    return {n: splits[n] for n in names}, facts


def group_references(sources: list[str], targets: list[str]) -> tuple[list[str], dict[str, int], dict[str, list[str]]]:
    """(each row's source key, the first row of every key, every key's references in row order).
    A sentence with several translations in a split is scored once, against all of them."""
    keys = [source_key(src) for src in sources]
    first: dict[str, int] = {}
    references: dict[str, list[str]] = {}
    for row, (key, target) in enumerate(zip(keys, targets)):
        first.setdefault(key, row)
        references.setdefault(key, []).append(target)
    return keys, first, references


# --------------------------------------------------------------------------- stage hooks


def download(cfg: DictConfig, out: Path) -> dict:
    """Cleaned sentence pairs, split by unique source sentence (no source leakage)."""
    from datasets import Dataset, DatasetDict


    quiet_datasets()
    out = Path(out)
    start = time.perf_counter()
    raw = load_pairs(cfg.data)
    splits, facts = make_pair_splits(
        raw, seed=int(cfg.data.split.seed), val_fraction=float(cfg.data.split.val_fraction),
        test_fraction=float(cfg.data.split.test_fraction), max_source_words=cfg.data.max_source_words,
        max_train_pairs=cfg.data.max_train_pairs, max_eval_sources=cfg.data.max_eval_sources,
        max_examples_per_split=cfg.data.max_examples_per_split,
        length_test=LengthTest.from_config(cfg.data.get("length_test")),
    )
    dataset = DatasetDict({name: Dataset.from_dict({"source": p.sources, "target": p.targets})
                           for name, p in splits.items()})
    stats = {
        "dataset": cfg.data.name,
        "source": cfg.data.source,
        "split_seed": int(cfg.data.split.seed),
        "fingerprint": fingerprint(cfg, *STAGE_KEYS["download"]),
        "splits_provided_by_source": sorted(raw.splits),
        "pairs_read": {n: len(p) for n, p in raw.splits.items()},
        "dropped_while_cleaning": raw.cleaning,
        **facts,
        "counts": {name: len(p) for name, p in splits.items()},
        "unique_sources": {name: len({source_key(s) for s in p.sources}) for name, p in splits.items()},
    }
    with atomic_dir(out) as tmp:
        dataset.save_to_disk(str(tmp / "dataset"))
        stats["seconds"] = round(time.perf_counter() - start, 3)
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


TOKENIZER_FILES = {"source": "source_tokenizer.json", "target": "target_tokenizer.json"}


def tokenize(cfg: DictConfig, raw: Path, out: Path) -> dict:
    """A source and a target tokenizer trained on train; ids of both sides per split.
    Target ids carry no <bos>/<eos>; the batches add them."""
    from datasets import DatasetDict

    from rnnlab.data.tokenizer import build_tokenizer

    raw, out = Path(raw), Path(out)
    quiet_datasets()
    start = time.perf_counter()
    dataset = load_raw(raw)
    tokenizers = {side: build_tokenizer(cfg.tokenizer[side], dataset["train"][side], sequence_specials=True)
                  for side in ("source", "target")}
    stats: dict = {"fingerprint": fingerprint(cfg, *STAGE_KEYS["tokenize"]), "splits": {},
                   "vocab_size": {side: t.get_vocab_size() for side, t in tokenizers.items()}}
    encoded, n_tokens = {}, 0
    for split in [*SPLITS, *([LONG_SPLIT] if LONG_SPLIT in dataset else [])]:
        part = dataset[split]
        stats["splits"][split] = {}
        for side, tokenizer in tokenizers.items():
            ids, stats["splits"][split][side], count = encode_split(
                tokenizer, part[side], int(cfg.tokenizer[side].max_length))
            n_tokens += count
            part = part.add_column(f"{side}_ids", ids)
        encoded[split] = part
    stats["tokens_per_second"] = round(n_tokens / max(time.perf_counter() - start, 1e-9))
    stats["tokenizer"] = OmegaConf.to_container(cfg.tokenizer)
    with atomic_dir(out) as tmp:
        for side, tokenizer in tokenizers.items():
            tokenizer.save(str(tmp / TOKENIZER_FILES[side]))
        DatasetDict(encoded).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


def load_tokenized_pairs(path: Path):
    """(DatasetDict with source/target/source_ids/target_ids, {"source": Tokenizer, "target": Tokenizer})."""
    from tokenizers import Tokenizer

    def read():
        tokenizers = {side: Tokenizer.from_file(str(path / name)) for side, name in TOKENIZER_FILES.items()}
        return load_dataset(path), tokenizers

    return read_stage_output(path, "tokenize", read)


def embed(cfg: DictConfig, tokenized: Path, out: Path) -> dict:
    """GloVe rows for the source vocabulary (the target side's embeddings start random)."""
    dataset, tokenizers = load_tokenized_pairs(Path(tokenized))
    return embed_vocabulary(cfg, tokenizers["source"], dataset["train"]["source_ids"], Path(out))
