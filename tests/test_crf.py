"""The linear-chain CRF (rnnlab.models.crf) against brute-force enumeration of every tag sequence: log Z,
log-likelihood, Viterbi and marginals, with and without BIO constraints; padding changes nothing; gradients
reach every parameter; BIO constraints are exact and never broken by decoding."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rnnlab.errors import DataError
from rnnlab.models.crf import LinearChainCRF, bio_constraints

TAGS = {3: ["O", "B-a", "I-a"], 4: ["O", "B-a", "I-a", "B-b"], 5: ["O", "B-a", "I-a", "B-b", "I-b"]}
LENGTHS = [4, 1, 3, 2]  # a batch that mixes lengths: padding on three rows


def _crf(k: int, constrained: bool, seed: int = 0) -> LinearChainCRF:
    torch.manual_seed(seed)
    crf = LinearChainCRF(k, bio_constraints(TAGS[k]) if constrained else None)
    with torch.no_grad():  # larger than the init so that start, transitions and end matter
        for p in (crf.transitions, crf.start, crf.end):
            p.normal_(0.0, 1.0)
    return crf


def _batch(k: int, lengths=LENGTHS, seed: int = 1):
    torch.manual_seed(seed)
    steps = max(lengths)
    emissions = torch.randn(len(lengths), steps, k) * 2.0
    mask = torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]
    return emissions, mask


def _allowed(crf: LinearChainCRF, path) -> bool:
    if crf.start_penalty[path[0]] < 0 or crf.end_penalty[path[-1]] < 0:
        return False
    return all(crf.transition_penalty[a, b] == 0 for a, b in zip(path, path[1:]))


def _brute(crf: LinearChainCRF, emissions: torch.Tensor, n: int) -> dict:
    """Every allowed path of length n with its exact score (float64), log Z and the probabilities."""
    e = emissions[:n].detach().double()
    s, tr, en = (p.detach().double() for p in (crf.start, crf.transitions, crf.end))
    paths, scores = [], []
    for path in itertools.product(range(crf.num_tags), repeat=n):
        if not _allowed(crf, path):
            continue
        score = s[path[0]] + en[path[-1]] + sum(e[t, y] for t, y in enumerate(path))
        score = score + sum(tr[a, b] for a, b in zip(path, path[1:]))
        paths.append(path)
        scores.append(float(score))
    scores_t = torch.tensor(scores, dtype=torch.float64)
    log_z = torch.logsumexp(scores_t, 0)
    return {"paths": paths, "scores": scores_t, "log_z": float(log_z), "probs": torch.exp(scores_t - log_z)}


def _is_bio(tags: list[str]) -> bool:
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            return False
        prev = tag
    return True


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("k", [3, 4, 5])
def test_log_partition_and_likelihood_match_brute_force(k, constrained):
    crf = _crf(k, constrained)
    emissions, mask = _batch(k)
    log_z = crf.log_partition(emissions, mask)
    torch.manual_seed(2)
    tags = torch.full(mask.shape, -100, dtype=torch.long)
    expected_ll = []
    for b, n in enumerate(LENGTHS):
        brute = _brute(crf, emissions[b], n)
        assert log_z[b].item() == pytest.approx(brute["log_z"], abs=1e-4)
        pick = int(torch.randint(len(brute["paths"]), ()))  # a random allowed gold path
        tags[b, :n] = torch.tensor(brute["paths"][pick])
        expected_ll.append(brute["scores"][pick].item() - brute["log_z"])
    ll = crf.log_likelihood(emissions, tags, mask)
    assert ll.shape == (len(LENGTHS),)
    assert ll.tolist() == pytest.approx(expected_ll, abs=1e-4)
    assert (ll < 0).all()


def test_forward_reductions_and_forbidden_gold_path():
    crf = _crf(5, constrained=True)
    emissions, mask = _batch(5)
    tags = torch.zeros(mask.shape, dtype=torch.long)
    nll = crf(emissions, tags, mask, reduction="none")
    assert nll.shape == (len(LENGTHS),)
    assert torch.allclose(nll, -crf.log_likelihood(emissions, tags, mask))
    assert crf(emissions, tags, mask).item() == pytest.approx(nll.mean().item(), rel=1e-6)
    assert crf(emissions, tags, mask, reduction="sum").item() == pytest.approx(nll.sum().item(), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        crf(emissions, tags, mask, reduction="max")
    # a gold path that starts with I-a carries the finite penalty: very unlikely, but no inf or NaN
    bad = tags.clone()
    bad[:, 0] = 2
    ll = crf.log_likelihood(emissions, bad, mask)
    assert torch.isfinite(ll).all() and (ll < -5000).all()


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("k", [3, 4, 5])
def test_decode_matches_brute_force_argmax(k, constrained):
    crf = _crf(k, constrained, seed=3)
    emissions, mask = _batch(k, seed=4)
    decoded = crf.decode(emissions, mask)
    assert [len(p) for p in decoded] == LENGTHS
    for b, n in enumerate(LENGTHS):
        brute = _brute(crf, emissions[b], n)
        assert tuple(decoded[b]) == brute["paths"][int(brute["scores"].argmax())]


def test_decode_never_violates_bio_even_when_emissions_favour_it():
    names = ["O", "B-geo-loc", "I-geo-loc", "B-person", "I-person"]
    idx = {name: i for i, name in enumerate(names)}
    torch.manual_seed(5)
    crf = LinearChainCRF(len(names), bio_constraints(names))
    # each row's emissions strongly favour a BIO violation: I- at the start, I-X after O, I-X after B-Y/I-Y
    wanted = [["I-person", "I-person", "O"],
              ["O", "I-geo-loc", "I-geo-loc"],
              ["B-person", "I-geo-loc", "O"],
              ["B-geo-loc", "I-geo-loc", "I-person"]]
    emissions = torch.randn(len(wanted), 3, len(names))
    for b, row in enumerate(wanted):
        for t, name in enumerate(row):
            emissions[b, t, idx[name]] += 50.0
    mask = torch.ones(len(wanted), 3, dtype=torch.bool)
    decoded = crf.decode(emissions, mask)
    for b, path in enumerate(decoded):
        tags = [names[i] for i in path]
        assert _is_bio(tags), tags
        assert not _is_bio(wanted[b])  # the emissions alone would have broken BIO
        brute = _brute(crf, emissions[b], 3)
        assert tuple(path) == brute["paths"][int(brute["scores"].argmax())]
    # with no constraints the same emissions do give the violating paths
    free = LinearChainCRF(len(names))
    assert [[names[i] for i in p] for p in free.decode(emissions, mask)] == wanted


@pytest.mark.parametrize("constrained", [False, True])
def test_marginals_match_brute_force_and_sum_to_one(constrained):
    k = 5
    crf = _crf(k, constrained, seed=6)
    emissions, mask = _batch(k, seed=7)
    marg = crf.marginals(emissions, mask)
    assert marg.shape == emissions.shape and marg.dtype == torch.float32
    for b, n in enumerate(LENGTHS):
        brute = _brute(crf, emissions[b], n)
        expected = torch.zeros(n, k, dtype=torch.float64)
        for path, p in zip(brute["paths"], brute["probs"]):
            for t, y in enumerate(path):
                expected[t, y] += p
        assert torch.allclose(marg[b, :n].double(), expected, atol=1e-5)
        assert torch.allclose(marg[b, :n].sum(-1), torch.ones(n), atol=1e-5)
        assert (marg[b, n:] == 0).all()
    if constrained:  # I-a can never start, so its marginal at position 0 is exactly zero
        assert (marg[:, 0, 2] == 0).all()


@pytest.mark.parametrize("constrained", [False, True])
def test_padding_changes_nothing(constrained):
    k = 5
    crf = _crf(k, constrained, seed=8)
    torch.manual_seed(9)
    short_len, long_len = 3, 6
    short_em = torch.randn(1, short_len, k)
    short_tags = torch.tensor([[0, 1, 2]])  # O B-a I-a: allowed under BIO
    alone_mask = torch.ones(1, short_len, dtype=torch.bool)
    alone_ll = crf.log_likelihood(short_em, short_tags, alone_mask)
    alone_path = crf.decode(short_em, alone_mask)[0]
    alone_marg = crf.marginals(short_em, alone_mask)[0]
    alone_z = crf.log_partition(short_em, alone_mask)

    mask = torch.zeros(2, long_len, dtype=torch.bool)
    mask[0, :short_len] = True
    mask[1] = True
    long_tags = torch.tensor([0, 1, 2, 2, 0, 3])
    for garbage in (1e3, -1e3, 37.0):
        emissions = torch.randn(2, long_len, k)
        emissions[0, :short_len] = short_em[0]
        emissions[0, short_len:] = garbage * torch.randn(long_len - short_len, k)
        tags = torch.full((2, long_len), -100, dtype=torch.long)
        tags[0, :short_len] = short_tags[0]
        tags[1] = long_tags
        ll = crf.log_likelihood(emissions, tags, mask)
        assert ll[0].item() == pytest.approx(alone_ll.item(), abs=1e-5)
        assert crf.log_partition(emissions, mask)[0].item() == pytest.approx(alone_z.item(), abs=1e-5)
        paths = crf.decode(emissions, mask)
        assert paths[0] == alone_path and len(paths[1]) == long_len
        marg = crf.marginals(emissions, mask)
        assert torch.allclose(marg[0, :short_len], alone_marg, atol=1e-6)
        assert (marg[0, short_len:] == 0).all()
        # and the long row is what it would be alone too
        alone_long = crf.log_likelihood(emissions[1:], tags[1:], mask[1:])
        assert ll[1].item() == pytest.approx(alone_long.item(), abs=1e-5)
        loss = crf(emissions, tags, mask)
        assert torch.isfinite(loss)


def test_gradients_reach_emissions_and_all_parameters():
    k = 5
    crf = _crf(k, constrained=True, seed=10)
    emissions, mask = _batch(k, seed=11)
    emissions.requires_grad_(True)
    tags = torch.full(mask.shape, -100, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        tags[b, :n] = torch.tensor([1, 2, 0, 3][:n])
    crf(emissions, tags, mask).backward()
    for name, grad in [("emissions", emissions.grad), ("transitions", crf.transitions.grad),
                       ("start", crf.start.grad), ("end", crf.end.grad)]:
        assert grad is not None, name
        assert torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name
    # padded positions get no gradient; the penalties are buffers, not parameters
    assert (emissions.grad[~mask] == 0).all()
    assert {n for n, _ in crf.named_parameters()} == {"transitions", "start", "end"}
    # the gradient of log Z with respect to the emissions is the marginals
    em = emissions.detach().clone().requires_grad_(True)
    crf.log_partition(em, mask).sum().backward()
    assert torch.allclose(em.grad, crf.marginals(emissions.detach(), mask), atol=1e-5)


def test_autocast_and_half_inputs_compute_in_float32():
    k = 4
    crf = _crf(k, constrained=True, seed=12)
    emissions, mask = _batch(k, seed=13)
    emissions = emissions.bfloat16()
    reference = crf.log_partition(emissions.float(), mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_z = crf.log_partition(emissions, mask)
        marg = crf.marginals(emissions, mask)
    assert log_z.dtype == torch.float32 and marg.dtype == torch.float32
    assert torch.allclose(log_z, reference, atol=1e-5)


def test_bio_constraints_exact_matrix():
    names = ["O", "B-geo-loc", "I-geo-loc", "B-person", "I-person"]
    start, trans, end = bio_constraints(names)
    assert start.dtype == trans.dtype == end.dtype == torch.bool
    assert start.tolist() == [True, True, False, True, False]
    assert end.tolist() == [True] * 5
    # rows: from; columns: to            O     B-geo  I-geo  B-per  I-per
    assert trans.tolist() == [[True, True, False, True, False],   # O
                              [True, True, True, True, False],    # B-geo-loc
                              [True, True, True, True, False],    # I-geo-loc
                              [True, True, False, True, True],    # B-person
                              [True, True, False, True, True]]    # I-person


@pytest.mark.parametrize("bad", ["X-person", "B", "I-", "o", "B_person", ""])
def test_bad_tag_name_raises_data_error(bad):
    with pytest.raises(DataError) as info:
        bio_constraints(["O", "B-person", bad])
    message = str(info.value)
    assert repr(bad) in message
    assert "O, B-<type> or I-<type>" in message


def test_constraints_shape_checked_and_zero_length_rejected():
    with pytest.raises(ValueError, match="constraints"):
        LinearChainCRF(4, bio_constraints(TAGS[3]))
    crf = LinearChainCRF(3)
    mask = torch.tensor([[True, True], [False, False]])
    with pytest.raises(ValueError, match="at least one token"):
        crf.log_partition(torch.zeros(2, 2, 3), mask)
    assert math.isfinite(crf.log_partition(torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.bool)).item())
