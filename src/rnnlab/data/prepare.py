"""What the data stages of every family share: where their outputs go, what they record, how a finished
output is read back, the GloVe matrix of a vocabulary, and preparing missing outputs for interactive runs.
A family's own download/tokenize hooks live in its package (rnnlab.tasks.<family>)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import ConfigError, DataError
from rnnlab.io import atomic_dir, read_json, write_json

SPLITS = ("train", "validation", "test")


def quiet_datasets() -> None:
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
    """One folder per data set and embedding (GloVe and word2vec matrices of one vocabulary sit side by side;
    a family without an `embeddings` group has one folder per data set)."""
    folder = Path(cfg.paths.embeddings) / cfg.data.name
    return folder / cfg.embeddings.name if "embeddings" in cfg else folder


TIMINGS = ("seconds", "tokens_per_second")


def without_timings(stats: dict) -> dict:
    """A stage's facts as written into its output: without its wall time and throughput, which the stage
    prints instead. Outputs then depend only on inputs and parameters, so a stage run again (`dvc repro
    -f`, a lost cache) leaves every later stage up to date (benchmarks/bench_data.py measures the speed)."""
    return {key: value for key, value in stats.items() if key not in TIMINGS}


def read_stage_output(path: Path, stage: str, read):
    """`read()` of a finished stage output; a damaged one (truncated or edited files) is a DataError."""
    if not (path / "stats.json").is_file():
        raise DataError(f"{path} is not a finished {stage} output (no stats.json); run the {stage} stage")
    try:
        return read()
    except Exception as err:  # noqa: BLE001 - pyarrow, datasets and tokenizers raise many kinds
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} is damaged ({type(err).__name__}: {first}). `dvc status` shows it modified; "
                        f"`dvc repro -f <{stage} stage>` (or deleting the folder) re-creates it.") from None


def load_dataset(path: Path):
    from datasets import load_from_disk

    dataset = load_from_disk(str(path / "dataset"))
    for split in dataset.values():  # reads every table once, so a truncated file fails here
        split.data.validate()
    return dataset


def load_raw(path: Path):
    return read_stage_output(path, "download", lambda: load_dataset(path))


def save_tokenized(out: Path, tokenizer, splits: dict, stats: dict) -> None:
    """A tokenize output of one tokenizer: tokenizer.json, the encoded splits (a DatasetDict) and stats.json
    (without timings), written together or not at all."""
    from datasets import DatasetDict

    with atomic_dir(out) as tmp:
        tokenizer.save(str(tmp / "tokenizer.json"))
        DatasetDict(splits).save_to_disk(str(tmp / "dataset"))
        write_json(tmp / "stats.json", without_timings(stats))


def load_tokenized(path: Path):
    """(the encoded DatasetDict, the tokenizers.Tokenizer) of a tokenize output of one tokenizer."""
    from tokenizers import Tokenizer

    return read_stage_output(path, "tokenize",
                             lambda: (load_dataset(path), Tokenizer.from_file(str(path / "tokenizer.json"))))


def embed_tokenized(cfg: DictConfig, tokenized: Path, out: Path) -> dict:
    """The embed stage over a tokenize output of one tokenizer: GloVe rows of its vocabulary, coverage
    measured on the training split's `input_ids`."""
    dataset, tokenizer = load_tokenized(Path(tokenized))
    return embed_vocabulary(cfg, tokenizer, dataset["train"]["input_ids"], Path(out))


def length_stats(lengths: np.ndarray, max_length: int) -> dict:
    return {
        "examples": int(lengths.size),
        "mean": round(float(lengths.mean()), 2),
        "median": float(np.median(lengths)),
        "p95": float(np.percentile(lengths, 95)),
        "max": int(lengths.max()),
        "truncated_share": round(float((lengths >= max_length).mean()), 4),
    }


def encode_split(tokenizer, texts: list[str], max_length: int) -> tuple[list[list[int]], dict, int]:
    """(ids truncated to max_length, length and <unk> statistics of the untruncated encoding, token count)."""
    from rnnlab.data.tokenizer import UNK_ID, encode

    full = encode(tokenizer, texts, 10**9)
    lengths = np.array([len(ids) for ids in full])
    ids = [seq[:max_length] for seq in full]
    flat = np.concatenate([np.asarray(seq) for seq in ids])
    stats = length_stats(lengths, max_length)
    stats["unk_rate"] = round(float((flat == UNK_ID).mean()), 4)
    return ids, stats, int(lengths.sum())


def embed_vocabulary(cfg: DictConfig, tokenizer, train_ids: list[list[int]], out: Path) -> dict:
    """The GloVe matrix of a tokenizer's vocabulary (cfg.embeddings) -> out/matrix.npy + coverage.json;
    coverage is measured on the training ids `train_ids`."""
    from rnnlab.data.glove import build_matrix, load_vectors
    from rnnlab.data.tokenizer import PAD_ID, SPECIAL_TOKENS

    start = time.perf_counter()
    vocab = tokenizer.get_vocab()
    words, vectors = load_vectors(cfg.embeddings)
    matrix, found = build_matrix(vocab, words, vectors, seed=int(cfg.embeddings.oov_init_seed), pad_id=PAD_ID)
    counts = Counter()
    for ids in train_ids:
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


def load_matrix(path: Path, vocab_size: int | None = None) -> np.ndarray:
    """The embed stage's matrix (one row per tokenizer word); `vocab_size` (the tokenizer's) is checked."""
    if not (path / "coverage.json").is_file():
        raise DataError(f"{path} is not a finished embed output (no coverage.json); run the embed stage")
    fix = "`dvc repro -f -s <family>_embed` (or deleting the folder) re-creates it."
    try:
        matrix = np.load(path / "matrix.npy", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path / 'matrix.npy'} is damaged ({err}). {fix}") from None
    if matrix.ndim != 2 or not np.issubdtype(matrix.dtype, np.floating) or (
            vocab_size is not None and matrix.shape[0] != vocab_size):
        raise DataError(f"{path / 'matrix.npy'} has shape {tuple(matrix.shape)} ({matrix.dtype}), but the tokenizer "
                        f"has {vocab_size} words: expected a float matrix of {vocab_size} rows, one per word. It "
                        f"belongs to another tokenize output or was replaced. {fix}")
    return matrix


STAGE_MARKERS = {"download": "stats.json", "tokenize": "stats.json", "embed": "coverage.json"}
STAGE_DIRS = {"download": raw_dir, "tokenize": tokenized_dir, "embed": embeddings_dir}


def run_data_stage(cfg: DictConfig, stage: str) -> dict:
    """Run the family's hook of a data stage (download | tokenize | embed) into its output folder."""
    from rnnlab import tasks

    family = tasks.get(cfg.family)
    if stage == "download":
        return family.download(cfg, raw_dir(cfg))
    if stage == "tokenize":
        return family.tokenize(cfg, raw_dir(cfg), tokenized_dir(cfg))
    return family.embed(cfg, tokenized_dir(cfg), embeddings_dir(cfg))


def ensure_prepared(cfg: DictConfig) -> None:
    """For interactive (Hydra) runs: run the data stages whose output is missing; refuse to train
    on an output that was made from another configuration (no silent reuse of stale data)."""
    import fcntl

    lock_path = Path(cfg.paths.raw).parent / ".prepare.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:  # parallel sweep jobs (joblib launcher): one prepares, the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stage, marker in STAGE_MARKERS.items():
            folder = STAGE_DIRS[stage](cfg)
            expected = fingerprint(cfg, *STAGE_KEYS[stage])
            if not (folder / marker).is_file():
                print(f"[rnnlab] {stage}: {folder} is missing, making it")
                run_data_stage(cfg, stage)
            elif read_json(folder / marker).get("fingerprint") != expected:
                raise ConfigError(
                    f"{folder} was made from a different {'/'.join(STAGE_KEYS[stage])} configuration than "
                    f"this run's. Rebuild it for this configuration with `make params && dvc repro` "
                    f"(or `dvc exp run -S ...`), or delete {folder} to let this run make it."
                )
