"""The data stages: download -> tokenize -> embed. Each writes one folder atomically."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import DataError
from rnnlab.io import atomic_dir, read_json, write_json

SPLITS = ("train", "validation", "test")


def _quiet_datasets() -> None:
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()


def fingerprint(cfg: DictConfig, *keys: str) -> str:
    """Short hash of the config groups a stage depends on (recorded in its output)."""
    import hashlib
    import json

    payload = {key: OmegaConf.to_container(OmegaConf.select(cfg, key), resolve=True)
               if isinstance(OmegaConf.select(cfg, key), DictConfig) else OmegaConf.select(cfg, key)
               for key in keys}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# What each data stage's output depends on. The split is fixed by data.split.seed, not by the training
# `seed`: a seed sweep trains on and is scored against the very same splits.
STAGE_KEYS = {"download": ("data",), "tokenize": ("data", "tokenizer"),
              "embed": ("data", "tokenizer", "embeddings")}


def raw_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.raw) / cfg.data.name


def tokenized_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.tokenized) / cfg.data.name


def embeddings_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.embeddings) / cfg.data.name


def download(cfg: DictConfig, out: Path | None = None) -> dict:
    """Load the configured source, split it, and save a `datasets.DatasetDict` plus stats.json."""
    if cfg.task.name == "translate":
        return download_pairs(cfg, out)
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from rnnlab.data.sources import load_source
    from rnnlab.data.splits import label_counts, make_splits

    _quiet_datasets()
    out = Path(out or raw_dir(cfg))
    start = time.perf_counter()
    raw = load_source(cfg.data)
    provided = sorted(raw.splits)
    splits = make_splits(
        raw,
        seed=int(cfg.data.split.seed),
        val_fraction=float(cfg.data.split.val_fraction),
        test_fraction=float(cfg.data.split.test_fraction),
        max_examples_per_split=cfg.data.max_examples_per_split,
    )
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


def download_pairs(cfg: DictConfig, out: Path | None = None) -> dict:
    """Translation: cleaned sentence pairs, split by unique source sentence (no source leakage)."""
    from datasets import Dataset, DatasetDict

    from rnnlab.data.pairs import load_pairs, make_pair_splits, source_key

    _quiet_datasets()
    out = Path(out or raw_dir(cfg))
    start = time.perf_counter()
    raw = load_pairs(cfg.data)
    splits, facts = make_pair_splits(
        raw, seed=int(cfg.data.split.seed), val_fraction=float(cfg.data.split.val_fraction),
        test_fraction=float(cfg.data.split.test_fraction), max_source_words=cfg.data.max_source_words,
        max_train_pairs=cfg.data.max_train_pairs, max_eval_sources=cfg.data.max_eval_sources,
        max_examples_per_split=cfg.data.max_examples_per_split,
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


TIMINGS = ("seconds", "tokens_per_second")


def without_timings(stats: dict) -> dict:
    """A stage's facts as written into its output: without its wall time and throughput, which the stage
    prints instead. Outputs then depend only on inputs and parameters, so a stage run again (`dvc repro
    -f`, a lost cache) leaves every later stage up to date (benchmarks/bench_data.py measures the speed)."""
    return {key: value for key, value in stats.items() if key not in TIMINGS}


def _read_stage_output(path: Path, stage: str, read):
    """`read()` of a finished stage output; a damaged one (truncated or edited files) is a DataError."""
    if not (path / "stats.json").is_file():
        raise DataError(f"{path} is not a finished {stage} output (no stats.json); run the {stage} stage")
    try:
        return read()
    except Exception as err:  # noqa: BLE001 - pyarrow, datasets and tokenizers raise many kinds
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} is damaged ({type(err).__name__}: {first}). `dvc status` shows it modified; "
                        f"`dvc repro -f <{stage} stage>` (or deleting the folder) re-creates it.") from None


def _load_dataset(path: Path):
    from datasets import load_from_disk

    dataset = load_from_disk(str(path / "dataset"))
    for split in dataset.values():  # reads every table once, so a truncated file fails here
        split.data.validate()
    return dataset


def load_raw(path: Path):
    return _read_stage_output(path, "download", lambda: _load_dataset(path))


def _length_stats(lengths: np.ndarray, max_length: int) -> dict:
    return {
        "examples": int(lengths.size),
        "mean": round(float(lengths.mean()), 2),
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "truncated_share": round(float((lengths >= max_length).mean()), 4),
    }


def _encode_split(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], dict, int]:
    """(ids truncated to max_length, length and <unk> statistics of the untruncated encoding, token count)."""
    from rnnlab.data.tokenizer import UNK_ID, encode

    full = encode(tokenizer, texts, 10**9)
    lengths = np.array([len(ids) for ids in full])
    ids = [seq[:max_length] for seq in full]
    flat = np.concatenate([np.asarray(seq) for seq in ids])
    stats = _length_stats(lengths, max_length)
    stats["unk_rate"] = round(float((flat == UNK_ID).mean()), 4)
    return ids, stats, int(lengths.sum())


def tokenize(cfg: DictConfig, raw: Path | None = None, out: Path | None = None) -> dict:
    """Train the tokenizer on train texts; encode every split; save ids, tokenizer.json, stats."""
    from rnnlab.data.tokenizer import build_tokenizer

    if cfg.task.name == "translate":
        return tokenize_pairs(cfg, raw, out)
    raw = Path(raw or raw_dir(cfg))
    _quiet_datasets()
    out = Path(out or tokenized_dir(cfg))
    start = time.perf_counter()
    dataset = load_raw(raw)
    tokenizer = build_tokenizer(cfg.tokenizer, dataset["train"]["text"])
    max_length = int(cfg.tokenizer.max_length)
    encoded = {}
    stats: dict = {"vocab_size": tokenizer.get_vocab_size(), "splits": {},
                   "fingerprint": fingerprint(cfg, *STAGE_KEYS["tokenize"])}
    n_tokens = 0
    for split in SPLITS:
        ids, stats["splits"][split], count = _encode_split(tokenizer, dataset[split]["text"], max_length)
        n_tokens += count
        encoded[split] = dataset[split].add_column("input_ids", ids)
    stats["tokens_per_second"] = round(n_tokens / max(time.perf_counter() - start, 1e-9))
    stats["tokenizer"] = OmegaConf.to_container(cfg.tokenizer)
    from datasets import DatasetDict

    with atomic_dir(out) as tmp:
        tokenizer.save(str(tmp / "tokenizer.json"))
        DatasetDict(encoded).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


TRANSLATION_TOKENIZERS = {"source": "source_tokenizer.json", "target": "target_tokenizer.json"}


def tokenize_pairs(cfg: DictConfig, raw: Path | None = None, out: Path | None = None) -> dict:
    """Translation: a source and a target tokenizer trained on train; ids of both sides per split.
    Target ids carry no <bos>/<eos>; the batches add them."""
    from datasets import DatasetDict

    from rnnlab.data.tokenizer import build_tokenizer

    raw = Path(raw or raw_dir(cfg))
    _quiet_datasets()
    out = Path(out or tokenized_dir(cfg))
    start = time.perf_counter()
    dataset = load_raw(raw)
    tokenizers = {side: build_tokenizer(cfg.tokenizer[side], dataset["train"][side], sequence_specials=True)
                  for side in ("source", "target")}
    stats: dict = {"fingerprint": fingerprint(cfg, *STAGE_KEYS["tokenize"]), "splits": {},
                   "vocab_size": {side: t.get_vocab_size() for side, t in tokenizers.items()}}
    encoded, n_tokens = {}, 0
    for split in SPLITS:
        part = dataset[split]
        stats["splits"][split] = {}
        for side, tokenizer in tokenizers.items():
            ids, stats["splits"][split][side], count = _encode_split(
                tokenizer, part[side], int(cfg.tokenizer[side].max_length))
            n_tokens += count
            part = part.add_column(f"{side}_ids", ids)
        encoded[split] = part
    stats["tokens_per_second"] = round(n_tokens / max(time.perf_counter() - start, 1e-9))
    stats["tokenizer"] = OmegaConf.to_container(cfg.tokenizer)
    with atomic_dir(out) as tmp:
        for side, tokenizer in tokenizers.items():
            tokenizer.save(str(tmp / TRANSLATION_TOKENIZERS[side]))
        DatasetDict(encoded).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "stats.json", without_timings(stats))
    return stats


def load_tokenized_pairs(path: Path):
    """(DatasetDict with source/target/source_ids/target_ids, {"source": Tokenizer, "target": Tokenizer})."""
    from tokenizers import Tokenizer

    def read():
        tokenizers = {side: Tokenizer.from_file(str(path / name)) for side, name in TRANSLATION_TOKENIZERS.items()}
        return _load_dataset(path), tokenizers

    return _read_stage_output(path, "tokenize", read)


def load_tokenized(path: Path):
    """(DatasetDict with text/label/input_ids, tokenizers.Tokenizer)."""
    from tokenizers import Tokenizer

    return _read_stage_output(path, "tokenize",
                              lambda: (_load_dataset(path), Tokenizer.from_file(str(path / "tokenizer.json"))))


def embed(cfg: DictConfig, tokenized: Path | None = None, out: Path | None = None) -> dict:
    """Build the GloVe matrix for the tokenizer's vocabulary; write matrix.npy and coverage.json."""
    from rnnlab.data.glove import build_matrix, load_vectors
    from rnnlab.data.tokenizer import PAD_ID, SPECIAL_TOKENS

    tokenized = Path(tokenized or tokenized_dir(cfg))
    out = Path(out or embeddings_dir(cfg))
    start = time.perf_counter()
    if cfg.task.name == "translate":  # GloVe for the source (English) side only
        dataset, tokenizers = load_tokenized_pairs(tokenized)
        tokenizer, id_column = tokenizers["source"], "source_ids"
    else:
        (dataset, tokenizer), id_column = load_tokenized(tokenized), "input_ids"
    vocab = tokenizer.get_vocab()
    words, vectors = load_vectors(cfg.embeddings)
    matrix, found = build_matrix(vocab, words, vectors, seed=int(cfg.embeddings.oov_init_seed), pad_id=PAD_ID)
    counts = Counter()
    for ids in dataset["train"][id_column]:
        counts.update(ids)
    total = sum(counts.values())
    covered = sum(c for i, c in counts.items() if found[i])
    coverage = {
        "embeddings": cfg.embeddings.name,
        "fingerprint": fingerprint(cfg, *STAGE_KEYS["embed"]),
        "dim": int(matrix.shape[1]),
        "vocab_size": int(matrix.shape[0]),
        "vocab_found": int(found.sum()),
        "vocab_coverage": round(float(found.mean()), 4),
        "train_token_coverage": round(covered / max(total, 1), 4),
        "oov_examples": [t for t, i in sorted(vocab.items(), key=lambda kv: kv[1])
                         if not found[i] and t not in SPECIAL_TOKENS][:20],
    }
    with atomic_dir(out) as tmp:
        np.save(tmp / "matrix.npy", matrix)
        coverage["seconds"] = round(time.perf_counter() - start, 3)
        write_json(tmp / "coverage.json", without_timings(coverage))
    return coverage


def load_matrix(path: Path) -> np.ndarray:
    if not (path / "coverage.json").is_file():
        raise DataError(f"{path} is not a finished embed output (no coverage.json); run the embed stage")
    try:
        return np.load(path / "matrix.npy", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path / 'matrix.npy'} is damaged ({err}). `dvc repro -f <embed stage>` (or deleting "
                        "the folder) re-creates it.") from None


def ensure_prepared(cfg: DictConfig) -> None:
    """For interactive (Hydra) runs: run the data stages whose output is missing; refuse to train
    on an output that was made from another configuration (no silent reuse of stale data)."""
    import fcntl

    stages = [("download", raw_dir(cfg), "stats.json", download),
              ("tokenize", tokenized_dir(cfg), "stats.json", tokenize),
              ("embed", embeddings_dir(cfg), "coverage.json", embed)]
    lock_path = Path(cfg.paths.raw).parent / ".prepare.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:  # parallel sweep jobs (joblib launcher): one prepares, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        _prepare_missing(cfg, stages)


def _prepare_missing(cfg: DictConfig, stages: list) -> None:
    from rnnlab.errors import ConfigError

    for name, folder, marker, stage in stages:
        expected = fingerprint(cfg, *STAGE_KEYS[name])
        if not (folder / marker).is_file():
            print(f"[rnnlab] {name}: {folder} is missing, making it")
            stage(cfg)
        elif read_json(folder / marker).get("fingerprint") != expected:
            raise ConfigError(
                f"{folder} was made from a different {'/'.join(STAGE_KEYS[name])} configuration than "
                f"this run's. Rebuild it for this configuration with `make params && dvc repro` "
                f"(or `dvc exp run -S ...`), or delete {folder} to let this run make it."
            )
