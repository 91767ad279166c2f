"""The classification studies' parts: the bag-of-embeddings baseline (blind to order by construction), the
shuffle, the McNemar test, the gate statistics, and the study runner's errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from rnnlab.tasks.classify.model import TextClassifier


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_the_bag_baseline_cannot_see_word_order_and_the_recurrent_model_can(pooling):
    torch.manual_seed(0)
    ids, lengths = torch.tensor([[5, 9, 3, 7, 2, 0]]), torch.tensor([5])
    mixed = torch.tensor([[2, 7, 9, 5, 3, 0]])  # the same five words in another order, padding kept
    bag = TextClassifier(12, 6, 2, pooling=pooling, encoder="bag", dropout=0.0).eval()
    torch.testing.assert_close(bag(ids, lengths), bag(mixed, lengths))
    lstm = TextClassifier(12, 6, 2, pooling=pooling, dropout=0.0).eval()
    assert not torch.allclose(lstm(ids, lengths), lstm(mixed, lengths))


def test_bag_settings_without_a_meaning_are_refused():
    from rnnlab.config import compose, family_view, validate
    from rnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="encoder=bag has no last state"):
        validate(family_view(compose(["classify.model.encoder=bag", "classify.model.pooling=last"]), "classify"))
    with pytest.raises(ConfigError, match="depend on word order"):
        validate(family_view(compose(["classify.model.encoder=bag", "classify.model.pooling=mean",
                                      "classify.model.contextual=elmo"]), "classify"))


def test_the_shuffle_keeps_each_sentence_s_words_and_is_fixed_by_its_seed():
    from rnnlab.tasks.classify.gates import shuffled

    ids = [[1, 2, 3, 4, 5, 6, 7, 8], [9], [4, 4, 2]]
    once, again, other = shuffled(ids, 0), shuffled(ids, 0), shuffled(ids, 1)
    assert once == again and once != other
    assert [sorted(a) for a in once] == [sorted(a) for a in ids] and once[0] != ids[0]


def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_items():
    from rnnlab.tasks.classify.studies import mcnemar

    gold = np.zeros(30, dtype=int)
    first = np.zeros(30, dtype=int)
    second = first.copy()
    second[:10] = 1  # 10 items only the first gets right, none the other way
    assert mcnemar(gold, first, second) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar(gold, first, first) == 1.0
    second[10:20] = 1
    first[20:25] = 1  # 20 against 5
    assert mcnemar(gold, first, second) == pytest.approx(0.004077, abs=1e-5)


def test_gate_statistics_count_every_real_token_once():
    from rnnlab.models.encoders import padding_mask
    from rnnlab.tasks.classify.gates import gate_statistics

    torch.manual_seed(0)
    model = TextClassifier(12, 6, 2, cell="gru", hidden_size=5, pooling="mean", dropout=0.0).eval()
    batches = [{"ids": torch.tensor([[3, 4, 5], [6, 7, 0]]), "lengths": torch.tensor([3, 2])},
               {"ids": torch.tensor([[8, 9, 10, 11]]), "lengths": torch.tensor([4])}]
    rows = gate_statistics(model, batches)
    assert {(r["direction"], r["gate"]) for r in rows} == {(d, g) for d in ("forward", "backward")
                                                          for g in ("reset", "update")}
    assert all(r["tokens"] == 9 for r in rows)
    # the mean over tokens equals the mean of every real value the encoder's gates give
    values = []
    for batch in batches:
        x = model.encoder_inputs(batch["ids"], batch["lengths"])
        _, found = model.encoder.gates(x, batch["lengths"])
        mask = padding_mask(batch["lengths"], batch["ids"].size(1))
        values.append(found[0]["update"][mask])
    expected = torch.cat(values).mean().item()
    row = next(r for r in rows if r["direction"] == "forward" and r["gate"] == "update")
    assert row["mean"] == pytest.approx(expected, abs=1e-4)
    from rnnlab.errors import DataError

    with pytest.raises(DataError, match="only LSTM and GRU"):
        gate_statistics(TextClassifier(12, 6, 2, cell="rnn"), batches)


@pytest.mark.parametrize("args,message", [(["shapes", "family=classify"], "studies are word_order, gates"),
                                          (["gates", "family=seq2seq"], "has no studies")])
def test_the_study_runner_names_what_exists(args, message, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    proc = subprocess.run([sys.executable, str(ROOT / "pipelines/study.py"), args[0], "--params", str(params),
                           args[1]], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
