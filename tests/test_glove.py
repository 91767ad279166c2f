import copy
import functools

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import write_tiny_glove
from rnnlab.config import compose
from rnnlab.data.glove import build_matrix, load_vectors
from rnnlab.errors import DataError


@functools.cache
def _composed():
    """The default composition of conf/, once per test process (each test edits a deep copy of a node)."""
    return compose()


def _emb_cfg(vectors, words=None):
    cfg = copy.deepcopy(_composed().classify.embeddings)
    OmegaConf.update(cfg, "source", "local")
    OmegaConf.update(cfg, "local.vectors", str(vectors))
    OmegaConf.update(cfg, "local.words", str(words) if words else None)
    return cfg


def test_lookup_exact_then_lowercase_oov_random_and_pad_zero(tmp_path):
    vec_path, words_path = write_tiny_glove(tmp_path)
    words, vectors = load_vectors(_emb_cfg(vec_path, words_path))
    vocab = {"<pad>": 0, "<unk>": 1, "good": 2, "zebra": 3, "Movie": 4, "qqq": 5}
    matrix, found = build_matrix(vocab, words, vectors, seed=0)
    assert matrix.shape == (6, 8) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[2], vectors[words.index("good")])
    np.testing.assert_array_equal(matrix[4], vectors[words.index("movie")])  # lower-cased fallback
    assert not found[3]  # GloVe has "Zebra" only with a capital: a lowercase vocab word is OOV
    assert found.tolist() == [False, False, True, False, True, False]
    assert np.all(matrix[0] == 0)
    oov = matrix[[1, 3, 5]]
    assert 0.1 < oov.std() < 2.0  # random rows at GloVe's scale (fake vectors have std 0.5)
    again, _ = build_matrix(vocab, words, vectors, seed=0)
    np.testing.assert_array_equal(matrix, again)


def test_glove_text_format(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.1 0.2\ngood 0.3 0.4\n", encoding="utf-8")
    words, vectors = load_vectors(_emb_cfg(path))
    assert words == ["the", "good"] and vectors.shape == (2, 2)


def test_corrupt_and_mismatched_files_are_clear_errors(tmp_path):
    vec_path, words_path = write_tiny_glove(tmp_path)
    short = tmp_path / "short.txt"
    short.write_text("the\ngood\n", encoding="utf-8")
    with pytest.raises(DataError, match="one row per word"):
        load_vectors(_emb_cfg(vec_path, short))
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match="not a readable .npy"):
        load_vectors(_emb_cfg(junk, words_path))
    bad_txt = tmp_path / "bad.txt"
    bad_txt.write_text("the 0.1 0.2\ngood 0.3\n", encoding="utf-8")
    with pytest.raises(DataError, match="expected 2"):
        load_vectors(_emb_cfg(bad_txt))
    with pytest.raises(DataError, match="does not exist"):
        load_vectors(_emb_cfg(tmp_path / "missing.npy", words_path))
