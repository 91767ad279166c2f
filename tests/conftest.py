"""Shared fixtures: a tiny generated sentiment data set and a tiny fake GloVe file (no network,
no packaged data)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = ["good", "great", "lovely", "superb", "fun"]
NEGATIVE = ["bad", "awful", "dull", "boring", "weak"]
FILLER = ["the", "movie", "was", "a", "plot", "actors", "film", "and", "really", "story"]


def make_texts(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Texts whose label is decided by one sentiment word among filler words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = list(rng.choice(FILLER, size=rng.integers(3, 12)))
        cue = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words.insert(int(rng.integers(0, len(words) + 1)), cue)
        texts.append(" ".join(words) + rng.choice([".", "!", ""]))
        labels.append(label)
    return texts, labels


def write_tiny_glove(folder: Path, dim: int = 8) -> tuple[Path, Path]:
    words = ["the", "movie", "good", "bad", "great", "awful", ".", "!", "film", "Zebra"]
    vectors = np.random.default_rng(1).normal(0, 0.5, size=(len(words), dim)).astype(np.float32)
    vec_path, words_path = folder / "vectors.npy", folder / "words.txt"
    np.save(vec_path, vectors)
    words_path.write_text("\n".join(words) + "\n", encoding="utf-8")
    return vec_path, words_path


@pytest.fixture
def tiny_project(tmp_path: Path) -> dict:
    """A tiny local data set + fake GloVe, and the Hydra overrides that point the project at them."""
    texts, labels = make_texts(240)
    train_csv = tmp_path / "inputs" / "reviews.csv"
    train_csv.parent.mkdir()
    with train_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    vec_path, words_path = write_tiny_glove(tmp_path / "inputs")
    overrides = [
        "data.name=tiny", "data.source=local", f"data.local.train={train_csv}",
        "embeddings.source=local", f"embeddings.local.vectors={vec_path}",
        f"embeddings.local.words={words_path}",
        "model.hidden_size=16", "optim.batch_size=16", "optim.lr=0.02", "optim.embedding_lr=0.05",
        "model.embedding_dropout=0.0", "trainer.max_epochs=6", "trainer.patience=6",
        "trainer.progress_bar=false",
        f"tracking.tracking_uri=sqlite:///{tmp_path}/mlruns.db",
        f"tracking.artifact_location={tmp_path}/mlartifacts",
    ]
    return {"dir": tmp_path, "overrides": overrides, "train_csv": train_csv,
            "vectors": vec_path, "words": words_path}


def run_cmd(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a command with the venv's bin first on PATH; the caller checks returncode."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc
