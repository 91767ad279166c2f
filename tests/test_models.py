"""Encoders and poolings: padding never changes a result; every combination trains."""

import itertools

import pytest
import torch

from rnnlab.config import CELLS
from rnnlab.models.encoders import RecurrentEncoder, reverse_padded
from rnnlab.models.pooling import POOLINGS
from rnnlab.tasks.classify.model import TextClassifier

COMBOS = list(itertools.product(CELLS, POOLINGS))


def _batch():
    torch.manual_seed(0)
    ids = torch.randint(2, 40, (3, 6))
    lengths = torch.tensor([6, 4, 1])
    for row, length in enumerate(lengths):
        ids[row, length:] = 0
    return ids, lengths


def test_reverse_padded_reverses_within_length_and_is_an_involution():
    x = torch.arange(1, 6).repeat(2, 1).unsqueeze(-1).float()  # (2, 5, 1)
    lengths = torch.tensor([5, 3])
    out = reverse_padded(x, lengths)
    assert out[0, :, 0].tolist() == [5, 4, 3, 2, 1]
    assert out[1, :, 0].tolist() == [3, 2, 1, 4, 5]  # padding positions stay where they are
    assert torch.equal(reverse_padded(out, lengths), x)


@pytest.mark.parametrize("cell,pooling", COMBOS)
@pytest.mark.parametrize("bidirectional,layers,residual", [(True, 2, True), (False, 2, False), (True, 1, False)])
def test_padding_does_not_change_the_output(cell, pooling, bidirectional, layers, residual):
    model = TextClassifier(40, 8, 3, cell=cell, hidden_size=6, num_layers=layers,
                           bidirectional=bidirectional, residual=residual, pooling=pooling).eval()
    ids, lengths = _batch()
    with torch.no_grad():
        base = model(ids, lengths)
        extra_pad = model(torch.cat([ids, torch.zeros(3, 5, dtype=torch.long)], 1), lengths)
        alone = torch.cat([model(ids[i:i + 1, :n], lengths[i:i + 1]) for i, n in enumerate(lengths)])
    torch.testing.assert_close(base, extra_pad, atol=1e-6, rtol=0)
    torch.testing.assert_close(base, alone, atol=1e-6, rtol=0)


def test_attention_weights_are_zero_on_padding_and_sum_to_one():
    model = TextClassifier(40, 8, 2, pooling="attention", hidden_size=6).eval()
    ids, lengths = _batch()
    _, weights = model(ids, lengths, return_attention=True)  # (batch, time)
    assert torch.all(weights[1, 4:] == 0) and torch.all(weights[2, 1:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))


@pytest.mark.parametrize("cell,pooling", COMBOS)
def test_every_cell_and_pooling_trains_one_step(cell, pooling):
    torch.manual_seed(0)
    model = TextClassifier(40, 8, 3, cell=cell, hidden_size=6, pooling=pooling, dropout=0.0)
    ids, lengths = _batch()
    labels = torch.tensor([0, 1, 2])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = torch.nn.functional.cross_entropy(model(ids, lengths), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("encoder.") for n in changed) and "head.weight" in changed
    after = torch.nn.functional.cross_entropy(model(ids, lengths), labels)
    assert after < loss


def test_frozen_embeddings_keep_glove_and_random_mode_ignores_it():
    glove = torch.randn(40, 8).numpy()
    glove[0] = 0
    frozen = TextClassifier(40, 8, 2, embedding_mode="frozen", embeddings=glove)
    assert not frozen.embedding.weight.requires_grad
    torch.testing.assert_close(frozen.embedding.weight.detach(), torch.as_tensor(glove))
    random = TextClassifier(40, 8, 2, embedding_mode="random", embeddings=glove)
    assert random.embedding.weight.requires_grad
    assert not torch.allclose(random.embedding.weight.detach()[1:], torch.as_tensor(glove)[1:])


def test_encoder_output_size_and_fused_path():
    enc = RecurrentEncoder("gru", 8, 5, num_layers=3, bidirectional=False)
    assert enc.fused and enc.output_size == 5
    enc = RecurrentEncoder("lstm", 8, 5, num_layers=2, bidirectional=True, residual=True)
    assert not enc.fused and enc.output_size == 10
    ids = torch.randn(2, 4, 8)
    assert enc(ids, torch.tensor([4, 2])).shape == (2, 4, 10)


def test_word_dropout_only_in_training_and_never_on_padding():
    torch.manual_seed(0)
    model = TextClassifier(40, 8, 2, hidden_size=6, word_dropout=0.5, dropout=0.0)
    ids, lengths = _batch()
    seen = []
    model.embedding.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    model.train()(ids, lengths)
    dropped = seen[-1] != ids
    assert dropped.any() and torch.all(seen[-1][dropped] == 1)  # replaced by <unk>
    assert torch.all(seen[-1][ids == 0] == 0)  # padding untouched
    model.eval()(ids, lengths)
    assert torch.equal(seen[-1], ids)
