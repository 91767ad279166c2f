"""Tests for rnnlab.data.splits."""

from __future__ import annotations

import pytest

from rnnlab.data.sources import LabeledTexts, RawDataset
from rnnlab.data.splits import label_counts, make_splits
from rnnlab.errors import ConfigError, DataError


def _raw(counts: dict[int, int], extra: dict[str, LabeledTexts] | None = None) -> RawDataset:
    texts: list[str] = []
    labels: list[int] = []
    for label, n in counts.items():
        texts += [f"class{label} example {i}" for i in range(n)]
        labels += [label] * n
    splits = {"train": LabeledTexts(texts, labels), **(extra or {})}
    return RawDataset(splits, [f"c{k}" for k in range(max(counts) + 1)])


def _pairs(split: LabeledTexts) -> list[tuple[str, int]]:
    return list(zip(split.texts, split.labels))


def test_exact_splits_and_determinism() -> None:
    raw = _raw({0: 50, 1: 30, 2: 7})
    a = make_splits(raw, seed=1, val_fraction=0.2, test_fraction=0.1)
    b = make_splits(raw, seed=1, val_fraction=0.2, test_fraction=0.1)
    c = make_splits(raw, seed=2, val_fraction=0.2, test_fraction=0.1)
    assert list(a) == ["train", "validation", "test"]
    assert all(_pairs(a[k]) == _pairs(b[k]) for k in a)
    assert any(_pairs(a[k]) != _pairs(c[k]) for k in a)


def test_stratified_and_disjoint() -> None:
    counts = {0: 53, 1: 31, 2: 9}
    raw = _raw(counts)
    out = make_splits(raw, seed=7, val_fraction=0.15, test_fraction=0.2)
    seen: set[str] = set()
    for name in out:
        texts = set(out[name].texts)
        assert not texts & seen
        seen |= texts
    assert seen == set(raw.splits["train"].texts)
    shares = {"validation": 0.15, "test": 0.2, "train": 0.65}
    for name, share in shares.items():
        got = label_counts(out[name], raw.label_names)
        for label, n in counts.items():
            assert abs(got[f"c{label}"] - n * share) <= 1, (name, label, got)


def test_order_within_split_is_shuffled() -> None:
    raw = _raw({0: 40, 1: 40})
    out = make_splits(raw, seed=0, val_fraction=0.25, test_fraction=0.25)
    assert out["train"].labels != sorted(out["train"].labels)


def test_keeps_provided_test_and_carves_validation() -> None:
    test = LabeledTexts([f"t{i}" for i in range(6)], [0, 1, 0, 1, 0, 1])
    raw = _raw({0: 20, 1: 20}, {"test": test})
    out = make_splits(raw, seed=3, val_fraction=0.25, test_fraction=0.3)
    assert sorted(_pairs(out["test"])) == sorted(_pairs(test))
    assert len(out["validation"]) == 10 and len(out["train"]) == 30
    assert label_counts(out["validation"], raw.label_names) == {"c0": 5, "c1": 5}
    assert not set(out["validation"].texts) & set(out["train"].texts)


def test_keeps_provided_validation_and_test() -> None:
    val = LabeledTexts(["v0", "v1"], [0, 1])
    test = LabeledTexts(["t0", "t1", "t2"], [1, 1, 0])
    raw = _raw({0: 5, 1: 5}, {"validation": val, "test": test})
    out = make_splits(raw, seed=0, val_fraction=0.1, test_fraction=0.1)
    assert sorted(_pairs(out["validation"])) == sorted(_pairs(val))
    assert sorted(_pairs(out["test"])) == sorted(_pairs(test))
    assert sorted(_pairs(out["train"])) == sorted(_pairs(raw.splits["train"]))


@pytest.mark.parametrize(("val", "test"), [(0, 0.1), (0.1, 0), (-0.1, 0.2), (0.5, 0.5), (0.7, 0.4), ("0.1", 0.1)])
def test_fraction_validation(val: object, test: object) -> None:
    with pytest.raises(ConfigError):
        make_splits(_raw({0: 10, 1: 10}), seed=0, val_fraction=val, test_fraction=test)  # type: ignore[arg-type]


def test_bad_cap_is_config_error() -> None:
    with pytest.raises(ConfigError, match="max_examples_per_split"):
        make_splits(_raw({0: 10, 1: 10}), seed=0, val_fraction=0.1, test_fraction=0.1, max_examples_per_split=0)


def test_cap() -> None:
    raw = _raw({0: 100, 1: 100})
    out = make_splits(raw, seed=5, val_fraction=0.2, test_fraction=0.2, max_examples_per_split=15)
    assert [len(out[k]) for k in out] == [15, 15, 15]
    full = make_splits(raw, seed=5, val_fraction=0.2, test_fraction=0.2)
    assert set(out["test"].texts) <= set(full["test"].texts)


def test_tiny_data_still_fills_every_split() -> None:
    out = make_splits(_raw({0: 2, 1: 2}), seed=0, val_fraction=0.1, test_fraction=0.1)
    assert all(len(out[k]) >= 1 for k in out)
    assert sum(len(s) for s in out.values()) == 4


def test_too_little_data_is_data_error() -> None:
    with pytest.raises(DataError, match="empty"):
        make_splits(_raw({0: 2}), seed=0, val_fraction=0.1, test_fraction=0.1)


def test_label_counts_includes_zeros() -> None:
    split = LabeledTexts(["a", "b", "c"], [0, 0, 2])
    assert label_counts(split, ["x", "y", "z"]) == {"x": 2, "y": 0, "z": 1}
