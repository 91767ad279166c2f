"""The tagging family (rnnlab.tasks.ner): CoNLL reading and its errors, the deterministic splits, entity spans
and scores against seqeval, padding changing no tag, BIO-valid CRF decoding, and the pipeline on tiny
tagged data (train, evaluate, predict CLI, explorer view)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnlab.errors import DataError
from rnnlab.tasks.ner.data import carve_splits, parse_conll, tag_names
from rnnlab.tasks.ner.evaluate import bio_violations, entity_metrics, split_words
from rnnlab.tasks.ner.model import IGNORE, Tagger, collate_tagged, entity_spans

TAGS = ["O", "B-geo-loc", "I-geo-loc", "B-person", "I-person"]


def test_conll_reads_token_first_and_tag_last_and_skips_docstart():
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\t\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n"
    assert parse_conll(text, "f") == [(["EU", "rejects"], ["B-ORG", "O"]), (["Peter", "Blackburn"], ["B-PER", "I-PER"])]


@pytest.mark.parametrize("line, message", [
    ("Paris", r"x.conll line 2: 'Paris' has a token but no tag"),
    ("Paris\tLOC", r"x.conll line 2: tag 'LOC' is not a BIO tag; expected O, B-<type> or I-<type>"),
    ("Paris\tS-geo-loc", r"line 2: tag 'S-geo-loc' is not a BIO tag"),
])
def test_a_malformed_line_is_an_error_naming_the_file_and_line(tmp_path, line, message):
    from rnnlab.tasks.ner.data import _read_conll_file

    path = tmp_path / "x.conll"
    path.write_text(f"I\tO\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        _read_conll_file(path, "ner.data.local.train")


def test_splits_are_deterministic_disjoint_and_cover_every_sentence():
    sentences = [([f"w{i}"], ["O"]) for i in range(100)]
    a, b = carve_splits(sentences, 7, 0.1, 0.2), carve_splits(sentences, 7, 0.1, 0.2)
    assert a == b and {k: len(v) for k, v in a.items()} == {"train": 70, "validation": 10, "test": 20}
    assert {k: len(v) for k, v in carve_splits(sentences, 7, 0.1, 0.2, ("validation",)).items()} == \
        {"train": 90, "validation": 10}
    seen = [s[0][0] for split in a.values() for s in split]
    assert sorted(seen) == sorted(f"w{i}" for i in range(100))
    assert carve_splits(sentences, 8, 0.1, 0.2)["test"] != a["test"]
    with pytest.raises(DataError, match="cannot be split"):
        carve_splits(sentences[:2], 7, 0.1, 0.2)


def test_tag_names_are_o_then_b_and_i_of_each_type():
    assert tag_names({"train": [(["a", "b"], ["B-person", "O"])], "test": [(["c"], ["I-geo-loc"])]}) == TAGS


def test_entity_spans_read_bio_as_conlleval_does():
    assert entity_spans(["B-person", "I-person", "O", "B-geo-loc"]) == {("person", 0, 1), ("geo-loc", 3, 3)}
    # an I- that continues nothing starts an entity; a type change ends one
    assert entity_spans(["O", "I-person", "I-person", "I-geo-loc"]) == {("person", 1, 2), ("geo-loc", 3, 3)}
    assert entity_spans(["B-person", "B-person"]) == {("person", 0, 0), ("person", 1, 1)}
    assert bio_violations(["O", "I-person", "I-person", "B-x", "I-y"]) == 2


def test_entity_scores_equal_seqeval_on_hand_made_and_random_sequences():
    from seqeval.metrics import f1_score

    from rnnlab.tasks.ner.module import EntityScores

    gold = [["B-person", "I-person", "O", "B-geo-loc"], ["O", "B-geo-loc"]]
    pred = [["B-person", "I-person", "O", "B-person"], ["O", "O"]]
    m = entity_metrics(gold, pred)
    assert (m["precision"], m["recall"], m["f1"]) == (0.5, pytest.approx(1 / 3, abs=1e-4), 0.4)
    assert m["per_type"]["person"]["precision"] == 0.5 and m["per_type"]["geo-loc"]["recall"] == 0.0
    assert m["token_accuracy"] == pytest.approx(4 / 6, abs=1e-4)  # two of six tokens wrong
    rng = np.random.default_rng(0)
    for _ in range(20):  # any tag sequences, BIO-valid or not
        gold = [[TAGS[i] for i in rng.integers(0, 5, rng.integers(1, 9))] for _ in range(6)]
        pred = [[TAGS[i] for i in rng.integers(0, 5, len(g))] for g in gold]
        scores = EntityScores()
        scores.update(torch.tensor(0.0), pred, gold)
        assert float(scores.compute()["f1"]) == pytest.approx(f1_score(gold, pred, zero_division=0), abs=1e-6)


def test_collate_pads_spells_and_truncates():
    items = [(0, [5, 6, 7], ["a", "bb", "c"], [1, 2, 0]), (1, [8], ["Zé"], [3])]
    batch = collate_tagged(items, max_chars=6)
    assert batch["ids"].tolist() == [[5, 6, 7], [8, 0, 0]] and batch["lengths"].tolist() == [3, 1]
    assert batch["tags"].tolist() == [[1, 2, 0], [3, IGNORE, IGNORE]]
    assert batch["chars"].shape == (2, 3, 6) and batch["chars"][1, 1:].abs().sum() == 0
    assert collate_tagged(items, max_chars=6, max_length=2)["ids"].shape == (2, 2)
    assert collate_tagged(items, max_chars=None)["chars"] is None  # a tagger without characters reads no bytes
    assert _tagger("crf", "none").max_chars is None


def _tagger(output: str, chars: str = "cnn") -> Tagger:
    torch.manual_seed(0)
    return Tagger(20, 6, TAGS, hidden_size=8, output=output, char_encoder=chars, embedding_mode="random",
                  char_cfg={"char_dim": 4, "char_filters": [[2, 5]], "max_word_chars": 8}).eval()


@pytest.mark.parametrize("output", ["softmax", "crf"])
def test_padding_changes_no_tag_and_no_probability(output):
    model = _tagger(output)
    short = (0, [3, 4, 5], ["Ana", "in", "Lima"], [0, 0, 0])
    long = (1, [6, 7, 8, 9, 10, 11], ["we", "met", "Bob", "Smith", "in", "Paris"], [0] * 6)
    with torch.no_grad():
        alone = collate_tagged([short], 8)
        both = collate_tagged([short, long], 8)
        s1, s2 = model(alone["ids"], alone["chars"], alone["lengths"]), model(both["ids"], both["chars"], both["lengths"])
        assert model.decode(s1, alone["lengths"])[0] == model.decode(s2, both["lengths"])[0]
        p1, p2 = model.probabilities(s1, alone["lengths"]), model.probabilities(s2, both["lengths"])
    assert torch.allclose(p1[0], p2[0, :3], atol=1e-5)
    assert torch.allclose(p2.sum(-1), torch.tensor([[1.0] * 3 + [0.0] * 3, [1.0] * 6]), atol=1e-5)


def test_crf_decoding_never_violates_bio_where_softmax_may():
    torch.manual_seed(1)
    scores = torch.randn(64, 12, len(TAGS)) * 3
    lengths = torch.randint(1, 13, (64,))
    crf, softmax = _tagger("crf"), _tagger("softmax")
    names = lambda rows: [[TAGS[t] for t in r] for r in rows]  # noqa: E731
    assert sum(bio_violations(r) for r in names(crf.decode(scores, lengths))) == 0
    assert sum(bio_violations(r) for r in names(softmax.decode(scores, lengths))) > 0


def test_raw_text_is_split_as_tweets_are():
    assert split_words("I'm @bob, see http://t.co/x #NYC don't! ... :) &lt;3 U.S. (item 8)") == [
        "I'm", "@bob", ",", "see", "http://t.co/x", "#NYC", "don't", "!", "...", ":)", "&lt;", "3", "U.S.", "(",
        "item", "8", ")"]


def test_iob1_and_stray_i_tags_are_read_as_entity_starts():
    from seqeval.metrics.sequence_labeling import get_entities

    from rnnlab.tasks.ner.data import to_bio

    tags = ["O", "I-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG", "I-ORG"]
    fixed, changed = to_bio(tags)
    assert fixed == ["O", "B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-ORG", "I-ORG"] and changed == 3
    assert get_entities(fixed) == get_entities(tags)  # the same entities as seqeval reads them


def test_a_source_s_own_splits_are_kept_and_only_missing_ones_carved(tmp_path):
    from omegaconf import OmegaConf

    from conftest import make_tagged_sentences, write_conll
    from rnnlab.data.prepare import load_raw
    from rnnlab.tasks.ner.data import download

    train = write_conll(tmp_path / "train.conll", make_tagged_sentences(50, seed=1))
    test = write_conll(tmp_path / "test.conll", make_tagged_sentences(7, seed=2))
    cfg = OmegaConf.create({"data": {"name": "x", "source": "local", "local": {"train": str(train), "test": str(test)},
                                     "split": {"seed": 3, "val_fraction": 0.1, "test_fraction": 0.2},
                                     "max_examples_per_split": None}})
    stats = download(cfg, tmp_path / "raw")
    assert stats["counts"] == {"train": 45, "validation": 5, "test": 7}
    assert stats["splits_provided_by_source"] == ["test", "train"] and stats["i_tags_written_as_b"] == 0
    assert load_raw(tmp_path / "raw")["test"]["tokens"] == [[w for w, _ in s] for s in make_tagged_sentences(7, seed=2)]


@pytest.mark.parametrize("tokens, tags, message", [
    (["Ana", "in", "Lima"], ["B-PER", "O"], r"row 0: 3 tokens but 2 tags"),
    (["Ana", None], None, r"row 0: 2 tokens but 0 tags"),
    (["Ana", ""], ["B-PER", "O"], r"row 0: an empty token or one holding a space"),
])
def test_hub_rows_that_do_not_pair_tokens_and_tags_are_clear_errors(monkeypatch, tokens, tags, message):
    import datasets
    from omegaconf import OmegaConf

    from rnnlab.tasks.ner import data

    rows = datasets.Dataset.from_dict({"tokens": [tokens], "tags": [tags]})
    monkeypatch.setattr("rnnlab.data.sources.hub_splits", lambda hub: {"train": rows})
    cfg = OmegaConf.create({"data": {"hub": {"id": "some/set", "tokens_column": "tokens", "tags_column": "tags"}}})
    with pytest.raises(DataError, match=message):
        data._hub_splits(cfg)


@pytest.mark.slow
@pytest.mark.cost(30)
@pytest.mark.timeout(300)
def test_the_pipeline_trains_evaluates_and_predicts_on_tiny_tagged_data(tiny_project, monkeypatch, capsys):
    from conftest import write_conll
    from rnnlab.config import ConfigError, compose, family_view, validate
    from rnnlab.data.prepare import run_data_stage
    from rnnlab.tasks.ner.evaluate import evaluate, load_tagger
    from rnnlab.tasks.ner.explorer_tab import ner_view
    from rnnlab.training.train import train

    monkeypatch.chdir(tiny_project["dir"])
    overrides = tiny_project["overrides"]
    cfg = family_view(compose([*overrides, "ner.trainer.max_epochs=6", "ner.trainer.patience=6"]), "ner")
    validate(cfg)
    stats = [run_data_stage(cfg, stage) for stage in ("download", "tokenize", "embed")]
    assert stats[0]["counts"] == {"train": 84, "validation": 12, "test": 24}
    assert stats[0]["tag_names"] == TAGS and stats[0]["splits_provided_by_source"] == ["train"]
    summary = train(cfg, tiny_project["dir"] / "models/ner/tinyner/crf-cnn", [])
    assert summary["epochs_run"] >= 1 and summary["history"][-1]["val_f1"] is not None
    folder = tiny_project["dir"] / "models/ner/tinyner/crf-cnn"
    metrics = evaluate(tiny_project["dir"] / "data/tokenized/tinyner", folder, tiny_project["dir"] / "m.json",
                       tiny_project["dir"] / "plots", log_to_mlflow=True)
    assert metrics["f1"] >= 0.9, metrics  # the names and places of a tiny grammar
    assert metrics["bio_violations"] == 0 and metrics["sentences"] == 24
    rows = (tiny_project["dir"] / "plots/confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted"
    details_pairs = [r.split(",") for r in rows[1:]]  # every gold entity is a row, with its predicted type
    assert sum(1 for actual, _ in details_pairs if actual != "(none)") == metrics["entities"]
    details = json.loads((tiny_project["dir"] / "plots/details.json").read_text())
    assert set(details["per_type"]) == {"person", "geo-loc"}

    from rnnlab.predict import main as predict_main

    capsys.readouterr()  # (the training's epoch lines)
    assert predict_main(["--model", str(folder), "--tags", "Bob Smith went to Lima today !"]) in (0, None)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "person: Bob Smith (tokens 0-1)  geo-loc: Lima (tokens 4-4)"
    assert out[1].split("\t")[1:3] == ["Bob", "B-person"] and len(out) == 1 + 7
    view = ner_view(load_tagger(folder), "we met Ana in New York")
    assert view["result"]["entities"] == [("person", 2, 2, "Ana"), ("geo-loc", 4, 5, "New York")]
    assert view["entities"].count('class="rnnlab-entity"') == 2 and view["table"].count("<tr>") == 7
    with pytest.raises(DataError, match="empty input: give a sentence"):
        ner_view(load_tagger(folder), "   ")

    # bad inputs: a malformed CoNLL line, a tokenizer that would split tokens
    bad = write_conll(tiny_project["dir"] / "bad.conll", [[("Ana", "B-person"), ("Lima", "LOC")]])
    bad_cfg = family_view(compose([*overrides, f"ner.data.local.train={bad}", "ner.data.name=bad"]), "ner")
    with pytest.raises(DataError, match=r"bad.conll line 2: tag 'LOC' is not a BIO tag"):
        run_data_stage(bad_cfg, "download")
    assert not (tiny_project["dir"] / "data/raw/bad").exists()  # nothing half-written
    with pytest.raises(ConfigError, match="one id per given token"):
        validate(family_view(compose([*overrides, "ner.tokenizer.split_punctuation=true"]), "ner"))


@pytest.mark.slow
@pytest.mark.cost(20)
@pytest.mark.timeout(300)
def test_a_tagger_stopped_inside_an_epoch_resumes_to_the_uninterrupted_result(tiny_project, monkeypatch, capsys):
    """The shared resume machinery with this family's data and module: a failure inside epoch 3 keeps the end
    of epoch 2; the same call resumes there and ends with the weights and history of an uninterrupted run."""
    from rnnlab.config import compose, family_view, validate
    from rnnlab.data.prepare import run_data_stage
    from rnnlab.tasks.ner.module import TaggerModule
    from rnnlab.training.train import train

    monkeypatch.chdir(tiny_project["dir"])
    cfg = family_view(compose([*tiny_project["overrides"], "ner.trainer.max_epochs=4", "ner.trainer.patience=4"]),
                      "ner")
    validate(cfg)
    for stage in ("download", "tokenize", "embed"):
        run_data_stage(cfg, stage)
    root = tiny_project["dir"]
    reference = train(cfg, root / "reference", [])
    original = TaggerModule.training_step

    def stopped(self, batch, batch_idx):
        if self.current_epoch == 2 and batch_idx == 3:
            raise RuntimeError("simulated stop inside epoch 3")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(TaggerModule, "training_step", stopped)
    with pytest.raises(RuntimeError, match="simulated stop"):
        train(cfg, root / "resumed", [], checkpoint_dir=root / "ckpt")
    assert not (root / "resumed").exists()
    monkeypatch.setattr(TaggerModule, "training_step", original)
    capsys.readouterr()
    resumed = train(cfg, root / "resumed", [], checkpoint_dir=root / "ckpt")
    assert "resuming from" in capsys.readouterr().out and resumed["resumed"]
    a, b = (torch.load(root / name / "model.pt", weights_only=True) for name in ("reference", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    drop = ("epoch_seconds", "train_tokens_per_second")
    assert [{k: v for k, v in r.items() if k not in drop} for r in reference["history"]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in resumed["history"]]
