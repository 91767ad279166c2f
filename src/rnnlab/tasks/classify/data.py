"""Data hooks of the classification family: labelled texts from a package, hub or local source, split
with stratification, tokenised with one word/BPE tokenizer (rnnlab.data.tokenizer), embedded with GloVe."""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rnnlab.data.prepare import (SPLITS, STAGE_KEYS, embed_tokenized, encode_split, fingerprint, load_raw,
                                 load_tokenized, quiet_datasets, save_tokenized, without_timings)
from rnnlab.errors import DataError
from rnnlab.io import atomic_dir, write_json


def download(cfg: DictConfig, out: Path) -> dict:
    """Load the configured source, split it (stratified), and save a `datasets.DatasetDict` plus stats.json."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from rnnlab.data.sources import load_labeled
    from rnnlab.data.splits import label_counts, make_splits

    quiet_datasets()
    out = Path(out)
    start = time.perf_counter()
    raw = load_labeled(cfg.data)
    provided = sorted(raw.splits)
    splits = make_splits(
        raw,
        seed=int(cfg.data.split.seed),
        val_fraction=float(cfg.data.split.val_fraction),
        test_fraction=float(cfg.data.split.test_fraction),
        max_examples_per_split=cfg.data.max_examples_per_split,
    )
    present = sorted({raw.label_names[i] for i in splits["train"].labels})
    if len(present) < 2:
        raise DataError(
            f"{cfg.data.name}: the training split holds {len(present)} class ({', '.join(present) or 'none'}) of "
            f"{len(raw.label_names)} known ({', '.join(map(str, raw.label_names))}); a classifier needs examples of "
            "at least two. Check the label column (classify.data.local.label_column) and the file's labels.")
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(raw.label_names))})
    dataset = DatasetDict(
        {name: Dataset.from_dict({"text": s.texts, "label": s.labels}, features=features)
         for name, s in splits.items()}
    )
    stats = {
        "dataset": cfg.data.name,
        "source": cfg.data.source,
        "split_seed": int(cfg.data.split.seed),
        "fingerprint": fingerprint(cfg, *STAGE_KEYS["download"]),
        "splits_provided_by_source": provided,
        "label_names": list(raw.label_names),
        "counts": {name: len(s.texts) for name, s in splits.items()},
        "label_counts": {name: label_counts(s, raw.label_names) for name, s in splits.items()},
    }
    with atomic_dir(out) as tmp:
        dataset.save_to_disk(str(tmp / "dataset"))
        stats["seconds"] = round(time.perf_counter() - start, 3)
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


def tokenize(cfg: DictConfig, raw: Path, out: Path) -> dict:
    """Train the tokenizer on train texts; encode every split; save ids, tokenizer.json, stats."""
    from rnnlab.data.tokenizer import build_tokenizer

    raw, out = Path(raw), Path(out)
    quiet_datasets()
    start = time.perf_counter()
    dataset = load_raw(raw)
    tokenizer = build_tokenizer(cfg.tokenizer, dataset["train"]["text"])
    max_length = int(cfg.tokenizer.max_length)
    encoded = {}
    stats: dict = {"vocab_size": tokenizer.get_vocab_size(), "splits": {},
                   "fingerprint": fingerprint(cfg, *STAGE_KEYS["tokenize"])}
    n_tokens = 0
    for split in SPLITS:
        ids, stats["splits"][split], count = encode_split(tokenizer, dataset[split]["text"], max_length)
        n_tokens += count
        encoded[split] = dataset[split].add_column("input_ids", ids)
    stats["tokens_per_second"] = round(n_tokens / max(time.perf_counter() - start, 1e-9))
    stats["tokenizer"] = OmegaConf.to_container(cfg.tokenizer)
    save_tokenized(out, tokenizer, encoded, stats)
    return stats


embed = embed_tokenized  # the embed stage: GloVe rows of the tokenizer's vocabulary
