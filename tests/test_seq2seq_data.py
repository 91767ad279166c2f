"""Tests for rnnlab.tasks.seq2seq.data: cleaning, the Anki TSV parser, local loading and, above all,
splits with no English-source leakage. All data is generated here (no network, no packaged files)."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter

import pandas as pd
import pytest
from omegaconf import OmegaConf

from rnnlab.errors import ConfigError, DataError
from rnnlab.tasks.seq2seq.data import (LONG_SPLIT, LengthTest, Pairs, RawPairs, clean_pairs, load_pairs,
                                      make_pair_splits, parse_anki_tsv, source_key)

SUBJECTS = ["Tom", "Mary", "We", "They", "You"]
VERBS = ["like", "see", "want", "need"]
OBJECTS = ["the dog", "apples", "the old house", "music", "it"]


def _generated(seed: int = 0) -> Pairs:
    """100 English sentences (plus "Go."), each with 1-4 Spanish translations, written in random
    case/whitespace variants so that one source key has several spellings."""
    rng = random.Random(seed)
    sources, targets = [], []
    for i, (s, v, o) in enumerate(itertools.product(SUBJECTS, VERBS, OBJECTS)):
        english = f"{s} {v} {o}."
        variants = [english, english.lower(), english.upper() + " ", " " + english.replace(" ", "  \t")]
        for k in range(rng.randint(1, 4)):
            sources.append(rng.choice(variants))
            targets.append(f"Traducción {k} de la frase {i}.")
    sources += ["Go.", "Go.", "go. ", "GO."]
    targets += ["Ve.", "Vete.", "Vaya.", "¡Vete!"]
    order = list(range(len(sources)))
    rng.shuffle(order)
    return Pairs([sources[i] for i in order], [targets[i] for i in order])


def _raw(train: Pairs, **provided: Pairs) -> RawPairs:
    return RawPairs({"train": train, **provided})


def _keys(pairs: Pairs) -> set[str]:
    return {source_key(s) for s in pairs.sources}


def _as_tuples(pairs: Pairs) -> list[tuple[str, str]]:
    return list(zip(pairs.sources, pairs.targets))


def _simple(sources: list[str], per_source: int = 2) -> Pairs:
    return Pairs([s for s in sources for _ in range(per_source)],
                 [f"{s} #{k}" for s in sources for k in range(per_source)])


# --------------------------------------------------------------------------- source_key / clean_pairs


def test_source_key_folds_case_whitespace_and_compatibility_forms():
    assert source_key("  Go \t\n home.  ") == source_key("go home.") == "go home."
    assert source_key("GO.") == source_key("Ｇｏ.") == "go."  # full-width letters via NFKC
    assert source_key("Straße") == "strasse"
    assert source_key("Go.") != source_key("Go!")


def test_clean_pairs_collapses_whitespace_drops_empty_and_exact_duplicates():
    sources = [" Hola \t amigo ", "Go.", "Go.  ", "go.", "", "Run!", None, float("nan"), "Hi."]
    targets = ["Hello  friend", "Ve.", "Ve.", "Ve.", "Corre.", "  \n", "Hola.", "Hola.", "Hola."]
    pairs, dropped = clean_pairs(sources, targets, "gen", "train")
    assert _as_tuples(pairs) == [("Hola amigo", "Hello friend"), ("Go.", "Ve."), ("go.", "Ve."), ("Hi.", "Hola.")]
    assert dropped == {"empty": 4, "duplicate": 1}


@pytest.mark.parametrize("bad", [5, 1.5, True])
def test_clean_pairs_rejects_non_text_values(bad):
    with pytest.raises(DataError, match=rf"row 1 has a target of type {type(bad).__name__}"):
        clean_pairs(["a", "b"], ["x", bad], "gen", "train")


def test_clean_pairs_errors_when_nothing_is_left_or_lengths_differ():
    with pytest.raises(DataError, match="no sentence pair"):
        clean_pairs(["", "a", None], ["x", " ", "y"], "gen", "validation")
    with pytest.raises(DataError, match="2 source sentences but 1 targets"):
        clean_pairs(["a", "b"], ["x"], "gen", "train")


def test_clean_pairs_rejects_list_values_with_data_error():
    with pytest.raises(DataError):
        clean_pairs([["Go", "now"]], ["Ve."], "gen", "train")


# --------------------------------------------------------------------------- parse_anki_tsv


def test_parse_anki_tsv_reads_two_columns_and_skips_blank_lines(tmp_path):
    path = tmp_path / "spa.tsv"
    path.write_text("Go.\tVe.\tCC-BY 2.0 (France) #2877272\n\n¿Why?\t¿Por qué?\tattr\nHi.\tHola.\n",
                    encoding="utf-8")
    assert parse_anki_tsv(path) == (["Go.", "¿Why?", "Hi."], ["Ve.", "¿Por qué?", "Hola."])


def test_parse_anki_tsv_names_the_line_without_a_tab(tmp_path):
    path = tmp_path / "spa.tsv"
    path.write_text("Go.\tVe.\tattr\n\nno tab here\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 has no tab-separated translation: 'no tab here'"):
        parse_anki_tsv(path)


def test_parse_anki_tsv_rejects_non_utf8(tmp_path):
    path = tmp_path / "spa.tsv"
    path.write_bytes("Garden.\tJardín.\tattr\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        parse_anki_tsv(path)


# --------------------------------------------------------------------------- load_pairs (local)


def _local_cfg(train, validation=None, test=None, **extra):
    return OmegaConf.create({"source": "local", "local": {
        "train": str(train) if train else None, "validation": str(validation) if validation else None,
        "test": str(test) if test else None, "source_column": "en", "target_column": "es", **extra}})


def _write(frame: pd.DataFrame, path):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in frame.to_dict("records")),
                        encoding="utf-8")
    else:
        frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_load_pairs_local_files(tmp_path, suffix):
    train = pd.DataFrame({"id": [1, 2, 3, 4], "en": ["Go.", "Go.", "I  ran.", "Wait!"],
                          "es": ["Ve.", "Ve.", "Corrí.", ""]})
    valid = pd.DataFrame({"en": ["¿Who?", "NA"], "es": ["¿Quién?", "No aplica."]})
    cfg = _local_cfg(_write(train, tmp_path / f"train{suffix}"), _write(valid, tmp_path / f"valid{suffix}"))
    raw = load_pairs(cfg)
    assert set(raw.splits) == {"train", "validation"}
    assert _as_tuples(raw.splits["train"]) == [("Go.", "Ve."), ("I ran.", "Corrí.")]
    assert _as_tuples(raw.splits["validation"]) == [("¿Who?", "¿Quién?"), ("NA", "No aplica.")]
    assert raw.cleaning == {"empty": 1, "duplicate": 1}


def test_load_pairs_local_missing_column_lists_columns_found(tmp_path):
    path = _write(pd.DataFrame({"english": ["Go."], "spanish": ["Ve."]}), tmp_path / "train.csv")
    with pytest.raises(DataError, match=r"\['en', 'es'\] not found; columns found: \['english', 'spanish'\]"):
        load_pairs(_local_cfg(path))
    cfg = _local_cfg(path, source_column="english", target_column="spanish")
    assert _as_tuples(load_pairs(cfg).splits["train"]) == [("Go.", "Ve.")]


def test_load_pairs_local_non_text_value(tmp_path):
    path = _write(pd.DataFrame({"en": ["Go.", 7], "es": ["Ve.", "Siete."]}), tmp_path / "train.jsonl")
    with pytest.raises(DataError, match="row 1 has a source of type int"):
        load_pairs(_local_cfg(path))


def test_load_pairs_config_errors():
    with pytest.raises(ConfigError, match="needs data.local.train"):
        load_pairs(_local_cfg(None))
    with pytest.raises(ConfigError, match="data.source='ftp' is not supported"):
        load_pairs(OmegaConf.create({"source": "ftp"}))


# --------------------------------------------------------------------------- make_pair_splits


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
@pytest.mark.parametrize("val_fraction,test_fraction", [(0.1, 0.1), (0.25, 0.05), (0.02, 0.5), (0.45, 0.45)])
def test_no_source_leakage_and_sources_never_cross_splits(seed, val_fraction, test_fraction):
    data = _generated(seed)
    splits, facts = make_pair_splits(_raw(data), seed, val_fraction, test_fraction)
    keys = {name: _keys(p) for name, p in splits.items()}
    assert not keys["train"] & keys["validation"] and not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    assert facts["source_overlap_with_train"] == {"validation": 0, "test": 0}
    # Every pair of every source is kept, all in one split, with its original spelling.
    n_keys = len(_keys(data))
    assert n_keys == 101
    assert sum(len(k) for k in keys.values()) == n_keys
    assert sorted(itertools.chain(*(_as_tuples(p) for p in splits.values()))) == sorted(_as_tuples(data))
    assert len(keys["test"]) == round(n_keys * test_fraction)
    assert len(keys["validation"]) == round(n_keys * val_fraction)
    assert facts["train_pairs_removed_for_leakage"] == 0


def test_case_and_whitespace_variants_share_a_split():
    data = _generated(3)
    go = {s for s in data.sources if source_key(s) == "go."}
    assert go == {"Go.", "go. ", "GO."}
    for seed in range(20):
        splits, _ = make_pair_splits(_raw(data), seed, 0.3, 0.3)
        holding = [name for name, p in splits.items() if go & set(p.sources)]
        assert len(holding) == 1
        assert Counter(splits[holding[0]].sources)["Go."] == 2 and go <= set(splits[holding[0]].sources)


def test_provided_splits_remove_leaking_training_pairs():
    names = [f"Sentence number {i}." for i in range(20)]
    train = _simple(names)  # 40 pairs, 2 per source
    validation = Pairs([names[0].upper(), names[1], names[2] + "  "], ["a", "b", "c"])
    test = Pairs(["  " + names[3].lower(), names[4]], ["d", "e"])
    splits, facts = make_pair_splits(_raw(train, validation=validation, test=test), 0, 0.2, 0.2)
    assert facts["train_pairs_removed_for_leakage"] == 10
    assert _as_tuples(splits["validation"]) == _as_tuples(validation)
    assert _as_tuples(splits["test"]) == _as_tuples(test)
    assert _as_tuples(splits["train"]) == _as_tuples(_simple(names[5:]))


def test_provided_validation_with_carved_test_counts_only_leaking_pairs():
    names = [f"Sentence number {i}." for i in range(20)]
    validation = Pairs(names[:4], ["a", "b", "c", "d"])
    splits, facts = make_pair_splits(_raw(_simple(names), validation=validation), 5, 0.5, 0.25)
    assert _as_tuples(splits["validation"]) == _as_tuples(validation)
    assert len(_keys(splits["test"])) == 4  # 25% of the 16 training sources not in validation
    assert not _keys(splits["test"]) & _keys(validation)
    assert not _keys(splits["train"]) & (_keys(splits["validation"]) | _keys(splits["test"]))
    assert facts["train_pairs_removed_for_leakage"] == 2 * 4  # both pairs of each validation source
    assert len(splits["train"]) == 40 - 2 * (4 + 4)


def test_carved_test_never_shares_sources_with_provided_validation():
    names = [f"Sentence number {i}." for i in range(100)]
    validation = Pairs(names[:50], ["v"] * 50)
    splits, _ = make_pair_splits(_raw(_simple(names), validation=validation), 0, 0.1, 0.2)
    assert not _keys(splits["validation"]) & _keys(splits["test"])


def test_max_source_words_filters_every_split():
    lengths = {f"{' '.join(['word'] * n)} {i}": n + 1 for n in range(6) for i in range(10)}
    validation = Pairs(["short one", "this one is far too long"], ["a", "b"])
    splits, facts = make_pair_splits(_raw(_simple(list(lengths)), validation=validation), 0, 0.2, 0.2,
                                     max_source_words=3)
    assert facts["pairs_after_length_filter"] == {"train": 2 * 30, "validation": 1}
    assert all(len(s.split()) <= 3 for p in splits.values() for s in p.sources)
    assert splits["validation"].sources == ["short one"]
    assert len(splits["train"]) + len(splits["test"]) == 60


def test_length_filter_that_empties_a_split_is_a_data_error():
    train = _simple(["a b", "c d", "e f", "g h"])
    with pytest.raises(DataError, match="split 'validation' is empty after keeping sources of at most 2 words"):
        make_pair_splits(_raw(train, validation=Pairs(["one two three"], ["x"])), 0, 0.1, 0.25,
                         max_source_words=2)
    with pytest.raises(DataError, match="split 'train' is empty"):
        make_pair_splits(_raw(train), 0, 0.25, 0.25, max_source_words=1)


def test_rounding_to_an_empty_split_is_a_data_error():
    with pytest.raises(DataError, match="split 'validation' is empty"):
        make_pair_splits(_raw(_simple(["a", "b", "c"])), 0, 0.1, 0.4)
    with pytest.raises(DataError, match="split 'test' is empty"):
        make_pair_splits(_raw(_generated(0)), 0, 0.2, 0.0)
    # A zero fraction is fine for a split the source provides.
    splits, _ = make_pair_splits(_raw(_generated(0), test=Pairs(["Unseen."], ["Nuevo."])), 0, 0.2, 0.0)
    assert _as_tuples(splits["test"]) == [("Unseen.", "Nuevo.")]


def test_max_train_pairs_takes_a_subset_of_the_same_split():
    data = _generated(0)
    full, _ = make_pair_splits(_raw(data), 4, 0.1, 0.1)
    capped, _ = make_pair_splits(_raw(data), 4, 0.1, 0.1, max_train_pairs=50)
    assert len(full["train"]) > 50 and len(capped["train"]) == 50
    assert set(_as_tuples(capped["train"])) < set(_as_tuples(full["train"]))
    for name in ("validation", "test"):
        assert _as_tuples(capped[name]) == _as_tuples(full[name])


def test_max_eval_sources_caps_unique_sources_and_keeps_their_pairs():
    data = _generated(1)
    per_key = Counter(source_key(s) for s in data.sources)
    splits, _ = make_pair_splits(_raw(data), 2, 0.3, 0.3, max_eval_sources=7)
    full, _ = make_pair_splits(_raw(data), 2, 0.3, 0.3)
    for name in ("validation", "test"):
        assert len(_keys(splits[name])) == 7
        assert _keys(splits[name]) < _keys(full[name])
        assert len(splits[name]) == sum(per_key[k] for k in _keys(splits[name]))
    assert _as_tuples(splits["train"]) == _as_tuples(full["train"])


def test_max_examples_per_split_caps_every_split():
    splits, _ = make_pair_splits(_raw(_generated(2)), 0, 0.1, 0.1, max_examples_per_split=15)
    assert {name: len(p) for name, p in splits.items()} == {"train": 15, "validation": 15, "test": 15}
    splits, _ = make_pair_splits(_raw(_generated(2)), 0, 0.02, 0.02, max_examples_per_split=100)
    assert len(splits["train"]) == 100 and 0 < len(splits["validation"]) < 100 and 0 < len(splits["test"]) < 100


def test_seeds_are_deterministic():
    data = _generated(0)
    a, _ = make_pair_splits(_raw(data), 11, 0.2, 0.2, max_train_pairs=60, max_eval_sources=10)
    b, _ = make_pair_splits(_raw(data), 11, 0.2, 0.2, max_train_pairs=60, max_eval_sources=10)
    c, _ = make_pair_splits(_raw(data), 12, 0.2, 0.2, max_train_pairs=60, max_eval_sources=10)
    assert all(_as_tuples(a[n]) == _as_tuples(b[n]) for n in a)
    assert _keys(a["validation"]) != _keys(c["validation"]) and _keys(a["test"]) != _keys(c["test"])


@pytest.mark.parametrize("val_fraction,test_fraction", [
    (-0.1, 0.1), (0.1, -0.01), (1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.7, 0.4), (float("nan"), 0.1)])
def test_bad_fractions_are_config_errors(val_fraction, test_fraction):
    with pytest.raises(ConfigError, match="data.split"):
        make_pair_splits(_raw(_generated(0)), 0, val_fraction, test_fraction)


# --------------------------------------------------------------------------- the length test (test_long)


def _by_length(seed: int = 0) -> Pairs:
    """20 sources of every length 1-12 words (distinct words per source), 1-2 translations each."""
    rng = random.Random(seed)
    sources, targets = [], []
    for n in range(1, 13):
        for i in range(20):
            words = " ".join(f"w{n}x{i}y{k}" for k in range(n))
            for k in range(rng.randint(1, 2)):
                sources.append(words.capitalize() + ".")
                targets.append(f"t{n}-{i}-{k}")
    return Pairs(sources, targets)


LENGTH_TEST = LengthTest(min_words=4, max_words=9, bucket_words=3, sources_per_bucket=8)


def test_long_split_is_held_out_everywhere_and_independent_of_the_training_cap():
    data = _by_length()
    plain, _ = make_pair_splits(_raw(data), 3, 0.1, 0.1, max_source_words=3)
    capped, facts = make_pair_splits(_raw(data), 3, 0.1, 0.1, max_source_words=3, length_test=LENGTH_TEST)
    wide, _ = make_pair_splits(_raw(data), 3, 0.1, 0.1, max_source_words=12, length_test=LENGTH_TEST)
    # a cap below min_words: train/validation/test exactly as without the length test
    assert all(_as_tuples(plain[n]) == _as_tuples(capped[n]) for n in ("train", "validation", "test"))
    # the long split is the same whatever the cap, and never shares a source with another split
    assert _as_tuples(capped[LONG_SPLIT]) == _as_tuples(wide[LONG_SPLIT])
    for splits in (capped, wide):
        for name in ("train", "validation", "test"):
            assert not _keys(splits[name]) & _keys(splits[LONG_SPLIT])
    # every pair of a chosen source, sources_per_bucket unique sources in each bucket of min..max words
    per_key = Counter(source_key(s) for s in data.sources)
    assert len(capped[LONG_SPLIT]) == sum(per_key[k] for k in _keys(capped[LONG_SPLIT]))
    words = Counter(LENGTH_TEST.bucket(len(s.split())) for s in {source_key(x): x for x in
                                                                 capped[LONG_SPLIT].sources}.values())
    assert words == {"4-6": 8, "7-9": 8}
    assert facts["length_test"]["test_long_sources_per_bucket"] == {"4-6": 8, "7-9": 8}
    assert facts["source_overlap_with_train"][LONG_SPLIT] == 0


def test_long_split_draws_at_most_what_exists_and_errors_when_nothing_is_long_enough():
    data = _by_length()
    splits, _ = make_pair_splits(_raw(data), 0, 0.1, 0.1, length_test=LengthTest(10, 12, 3, 500))
    assert len(_keys(splits[LONG_SPLIT])) == 60  # every 10-12 word source there is
    with pytest.raises(DataError, match="no source sentence of 13-15 words"):
        make_pair_splits(_raw(data), 0, 0.1, 0.1, length_test=LengthTest(13, 15, 3, 5))


@pytest.mark.parametrize("node,message", [
    ({"min_words": 5, "max_words": 15, "bucket_words": 3, "sources_per_bucket": 10}, "must start a bucket"),
    ({"min_words": 7, "max_words": 6, "bucket_words": 3, "sources_per_bucket": 10}, "below min_words"),
    ({"min_words": 7, "max_words": 15, "bucket_words": 3}, "sources_per_bucket missing"),
])
def test_length_test_settings_are_checked(node, message):
    with pytest.raises(ConfigError, match=message):
        LengthTest.from_config(OmegaConf.create(node))
    assert LengthTest.from_config(None) is None


def test_length_buckets_partition_the_length_view():
    from rnnlab.tasks.seq2seq.evaluate import EvalSet, bleu_by_length

    def eval_set(sources):
        return EvalSet(sources, [[1]] * len(sources), [[s.upper()] for s in sources], len(sources))

    short = eval_set([" ".join(["a"] * n) + f" s{n}" for n in range(1, 9)])  # 2..9 words: 7+ are left out
    long = eval_set([" ".join(["b"] * n) + f" l{n}" for n in (6, 6, 7, 8, 11)])  # 7, 7, 8, 9, 12 words
    outputs = lambda part: {"greedy": [r[0] for r in part.references], "beam": [r[0] for r in part.references]}  # noqa: E731
    test = LengthTest(min_words=7, max_words=15, bucket_words=3, sources_per_bucket=10)
    rows = bleu_by_length(test, (short, outputs(short)), (long, outputs(long)))
    assert [r["bucket"] for r in rows] == ["1-3", "4-6", "7-9", "10-12", "13-15"]
    assert [r["sources"] for r in rows] == [2, 3, 4, 1, 0]
    # every short source under min_words and every long source counted exactly once
    assert sum(r["sources"] for r in rows) == sum(len(s.split()) < 7 for s in short.sources) + len(long.sources)
    assert rows[2]["bleu_beam"] == rows[3]["bleu_beam"] == 100.0 and rows[-1]["bleu_beam"] is None
    # scores stay in their bucket: wrong long outputs move the long buckets only
    wrong = {"greedy": ["zz"] * 5, "beam": ["zz"] * 5}
    other = bleu_by_length(test, (short, outputs(short)), (long, wrong))
    assert [r["bleu_beam"] for r in other[:2]] == [r["bleu_beam"] for r in rows[:2]]
    assert other[2]["bleu_beam"] == other[3]["bleu_beam"] == 0.0
