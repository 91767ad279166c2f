"""Deterministic, label-stratified train/validation/test splits of a :class:`RawDataset`."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from rnnlab.data.sources import SPLIT_NAMES, LabeledTexts, RawDataset
from rnnlab.errors import ConfigError, DataError


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) < 1:
        raise ConfigError(
            f"{name}={value!r} is not allowed; it must be a number strictly between 0 and 1 "
            f"(e.g. 0.1). Set {name} to such a value."
        )
    return float(value)


def _check_inputs(seed: object, val_fraction: object, test_fraction: object,
                  max_examples_per_split: object) -> tuple[float, float]:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ConfigError(f"seed={seed!r} is not allowed; it must be a non-negative integer. Set seed=42, say.")
    val = _check_fraction("val_fraction", val_fraction)
    test = _check_fraction("test_fraction", test_fraction)
    if val + test >= 1:
        raise ConfigError(
            f"val_fraction + test_fraction = {val} + {test} = {val + test:g} leaves nothing for "
            "training; the sum must be below 1. Lower one or both fractions."
        )
    if max_examples_per_split is not None and (
        isinstance(max_examples_per_split, bool)
        or not isinstance(max_examples_per_split, numbers.Integral)
        or int(max_examples_per_split) < 1
    ):
        raise ConfigError(
            f"max_examples_per_split={max_examples_per_split!r} is not allowed; it must be a "
            "positive integer or null (no cap). Set it to e.g. 1000, or to null."
        )
    return val, test


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def _stratified_carve(labels: np.ndarray, fractions: Sequence[float],
                      rng: np.random.Generator) -> tuple[list[np.ndarray], np.ndarray]:
    """Carve parts of the given fractions out of a pool, per label class.

    Cut points are rounded cumulative fractions of each class, so each part holds within one
    example of its exact share of every class. Returns (parts, rest) as index arrays.
    """
    parts: list[list[int]] = [[] for _ in fractions]
    rest: list[int] = []
    cum = np.cumsum([0.0, *fractions])
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        cuts = [_round_half_up(len(idx) * c) for c in cum]
        for k in range(len(fractions)):
            parts[k].extend(idx[cuts[k]:cuts[k + 1]].tolist())
        rest.extend(idx[cuts[-1]:].tolist())
    # Tiny data: a part may round to empty although the pool could spare an example. Move one
    # example of the largest class left in the rest into it (the rest keeps at least one).
    for k, part in enumerate(parts):
        if part:
            continue
        if len(rest) < 2:
            continue
        values, counts = np.unique(labels[rest], return_counts=True)
        label = values[int(np.argmax(counts))]
        pos = next(i for i, j in enumerate(rest) if labels[j] == label)
        part.append(rest.pop(pos))
    return [np.asarray(p, dtype=np.int64) for p in parts], np.asarray(rest, dtype=np.int64)


def _subset(split: LabeledTexts, idx: np.ndarray) -> LabeledTexts:
    return LabeledTexts([split.texts[i] for i in idx], [split.labels[i] for i in idx])


def make_splits(raw: RawDataset, *, seed: int, val_fraction: float, test_fraction: float,
                max_examples_per_split: int | None = None) -> dict[str, LabeledTexts]:
    """Return exactly train/validation/test, deterministic from `seed` and stratified by label.

    Splits the source provides are kept; missing ones are carved from train (validation takes
    `val_fraction` and test `test_fraction` of the provided train split). Every split is
    shuffled, then optionally capped to its first `max_examples_per_split` examples.
    """
    val_f, test_f = _check_inputs(seed, val_fraction, test_fraction, max_examples_per_split)
    if "train" not in raw.splits or len(raw.splits["train"]) == 0:
        raise DataError(
            f"The dataset has no non-empty 'train' split (splits found: {list(raw.splits)}); a "
            "train split is required. Check the data source configuration."
        )
    n_labels = len(raw.label_names)
    for name, split in raw.splits.items():
        bad = sorted({y for y in split.labels if not 0 <= y < n_labels})
        if bad:
            raise DataError(
                f"Split '{name}' has label indices {bad[:5]} outside 0..{n_labels - 1} "
                f"(label names {raw.label_names}). Fix the loader so labels index label_names."
            )
    rng = np.random.default_rng(int(seed))
    train = raw.splits["train"]
    missing = [name for name in ("validation", "test") if name not in raw.splits]
    out: dict[str, LabeledTexts] = {name: raw.splits[name] for name in ("validation", "test")
                                    if name in raw.splits}
    if missing:
        fractions = [val_f if name == "validation" else test_f for name in missing]
        parts, rest = _stratified_carve(np.asarray(train.labels), fractions, rng)
        for name, idx in zip(missing, parts):
            out[name] = _subset(train, idx)
        out["train"] = _subset(train, rest)
    else:
        out["train"] = train
    result: dict[str, LabeledTexts] = {}
    for name in SPLIT_NAMES:
        split = out[name]
        order = rng.permutation(len(split))
        if max_examples_per_split is not None:
            order = order[: int(max_examples_per_split)]
        result[name] = _subset(split, order)
        if len(result[name]) == 0:
            raise DataError(
                f"Split '{name}' is empty (train had {len(train)} examples, val_fraction={val_f}, "
                f"test_fraction={test_f}); every split needs at least one example. Use more data "
                "or larger fractions."
            )
    return result


def label_counts(split: LabeledTexts, label_names: Sequence[str]) -> dict[str, int]:
    """Number of examples of each label, in label_names order (zeros included)."""
    counts = np.bincount(np.asarray(split.labels, dtype=np.int64), minlength=len(label_names))
    if len(counts) > len(label_names):
        raise DataError(
            f"Labels go up to {len(counts) - 1} but only {len(label_names)} label names were given "
            f"({list(label_names)}). Pass the dataset's label_names."
        )
    return {str(name): int(c) for name, c in zip(label_names, counts)}
