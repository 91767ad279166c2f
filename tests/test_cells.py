"""The cells written from their gate equations (rnnlab.models.cells) equal PyTorch's fused kernels: loaded with
the same weights, the same outputs, final states and gradients, for several layers, both directions and under
padding; and each variant changes exactly its equation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnlab.models.cells import CELL_VARIANTS, Stacked
from rnnlab.models.encoders import reverse_padded

FUSED = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _pair(cell: str, layers: int, input_size: int = 5, hidden: int = 7, seed: int = 0):
    torch.manual_seed(seed)
    fused = FUSED[cell](input_size, hidden, layers, batch_first=True).double()
    gates = Stacked(cell, input_size, hidden, layers).double()
    gates.load_state_dict(fused.state_dict())
    return fused, gates


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 3])
def test_outputs_final_states_and_gradients_equal_the_fused_kernel(cell, layers):
    fused, gates = _pair(cell, layers)
    x = torch.randn(4, 6, 5, dtype=torch.double)
    state = torch.randn(layers, 4, 7, dtype=torch.double)
    state = (state, torch.randn_like(state)) if cell == "lstm" else state
    outs = []
    for module in (fused, gates):
        xi = x.clone().requires_grad_(True)
        out, final = module(xi, state)
        loss = out.pow(2).sum() + sum(f.pow(3).sum() for f in (final if cell == "lstm" else (final,)))
        loss.backward()
        outs.append((out, final, xi.grad, {n: p.grad.clone() for n, p in module.named_parameters()}))
    (o1, f1, g1, p1), (o2, f2, g2, p2) = outs
    assert torch.allclose(o1, o2, atol=1e-10)
    for a, b in zip(f1 if cell == "lstm" else (f1,), f2 if cell == "lstm" else (f2,)):
        assert torch.allclose(a, b, atol=1e-10)
    assert torch.allclose(g1, g2, atol=1e-10)
    assert p1.keys() == p2.keys() and all(torch.allclose(p1[k], p2[k], atol=1e-9) for k in p1)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_both_directions_under_padding_equal_the_fused_bidirectional_kernel(cell):
    """A right-padded batch: forward over each sequence, backward over each reversed within its length (as the
    encoders run it) gives the fused bidirectional module's outputs at every real position."""
    torch.manual_seed(1)
    fused = FUSED[cell](5, 7, 1, batch_first=True, bidirectional=True).double()
    forward, backward = Stacked(cell, 5, 7).double(), Stacked(cell, 5, 7).double()
    weights = fused.state_dict()
    forward.load_state_dict({k: v for k, v in weights.items() if not k.endswith("_reverse")})
    backward.load_state_dict({k.removesuffix("_reverse"): v for k, v in weights.items() if k.endswith("_reverse")})
    lengths = torch.tensor([6, 4, 1])
    x = torch.randn(3, 6, 5, dtype=torch.double)
    for row, n in enumerate(lengths.tolist()):  # each sequence alone, no padding: the reference
        ref, _ = fused(x[row:row + 1, :n])
        out_f, _ = forward(x)
        out_b, _ = backward(reverse_padded(x, lengths))
        mine = torch.cat([out_f, reverse_padded(out_b, lengths)], dim=-1)[row:row + 1, :n]
        assert torch.allclose(mine, ref, atol=1e-10), (cell, row)


def test_each_variant_changes_its_equation_and_nonsense_is_refused():
    torch.manual_seed(2)
    x = torch.randn(2, 5, 4)
    base = Stacked("lstm", 4, 6)
    outputs = {}
    for variant in CELL_VARIANTS["lstm"]:
        module = Stacked("lstm", 4, 6, variant=variant)
        module.load_state_dict(base.state_dict(), strict=False)  # peepholes: extra weights, start at 0
        outputs[variant] = module(x)[0]
    assert torch.allclose(outputs["peepholes"], outputs["vanilla"])  # zero peepholes: the vanilla LSTM
    for variant in ("no_forget_gate", "no_input_gate", "no_output_gate", "coupled", "no_output_activation"):
        assert not torch.allclose(outputs[variant], outputs["vanilla"]), variant
    # no output gate: h = tanh(c) exactly
    module = Stacked("lstm", 4, 6, variant="no_output_gate")
    module.load_state_dict(base.state_dict())
    out, (h, c) = module(x)
    assert torch.allclose(h, torch.tanh(c))
    gru = Stacked("gru", 4, 6, variant="no_update_gate")
    out, h = gru(x)
    assert torch.allclose(out[:, -1], h[-1])
    with pytest.raises(ValueError, match="allowed for gru: vanilla, no_reset_gate, no_update_gate"):
        Stacked("gru", 4, 6, variant="peepholes")
    with pytest.raises(ValueError, match="does not exist for cell=rnn"):
        Stacked("rnn", 4, 6, variant="coupled")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_encoder_with_gate_cells_equals_the_fused_encoder_under_padding(cell, bidirectional):
    from rnnlab.models.encoders import RecurrentEncoder

    torch.manual_seed(3)
    fused = RecurrentEncoder(cell, 5, 7, 2, bidirectional).double()
    gates = RecurrentEncoder(cell, 5, 7, 2, bidirectional, impl="gates").double()
    gates.load_state_dict(fused.state_dict())
    x, lengths = torch.randn(3, 6, 5, dtype=torch.double), torch.tensor([6, 3, 1])
    assert torch.allclose(fused(x, lengths), gates(x, lengths), atol=1e-10)


def test_cell_settings_are_checked_with_clear_errors():
    from rnnlab.errors import ConfigError
    from rnnlab.models.choices import check_cell

    check_cell("lstm", "gates", "coupled")
    with pytest.raises(ConfigError, match="set model.cell_impl=gates"):
        check_cell("lstm", "fused", "peepholes")
    with pytest.raises(ConfigError, match="allowed for gru: vanilla, no_reset_gate, no_update_gate"):
        check_cell("gru", "gates", "coupled")
    with pytest.raises(ConfigError, match="cell_impl='scan'; allowed: fused, gates"):
        check_cell("rnn", "scan", "vanilla")


def _model_cfg(family: str, *overrides: str) -> dict:
    from omegaconf import OmegaConf

    from rnnlab.config import compose, family_view, validate

    view = family_view(compose([f"{family}.model.{o}" for o in overrides]), family)
    validate(view)
    return OmegaConf.to_container(view.model)


def _build(family: str, model_cfg: dict) -> nn.Module:
    """A small model of each family from its composed model config (random embeddings)."""
    import numpy as np

    vectors = np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)
    if family == "classify":
        from rnnlab.tasks.classify.model import build_classifier

        return build_classifier(model_cfg, 30, 6, 2, vectors)
    if family == "ner":
        from rnnlab.tasks.ner.model import build_tagger

        return build_tagger(model_cfg, 30, 6, ["O", "B-PER", "I-PER"], vectors)
    if family == "lm":
        from rnnlab.tasks.lm.model import build_lm

        return build_lm({**model_cfg, "adaptive_cutoffs": [10]}, 30, vectors, [f"w{i}" for i in range(30)])
    from rnnlab.tasks.seq2seq.model import build_seq2seq
    from rnnlab.tasks.sql.model import build_text2sql

    return (build_seq2seq if family == "seq2seq" else build_text2sql)(model_cfg, 30, 40, vectors)


@pytest.mark.parametrize("family,extra", [("classify", ()), ("ner", ()), ("lm", ()), ("lm", ("bidirectional=true",)),
                                          ("seq2seq", ("cell=lstm",)), ("sql", ())])
def test_every_family_builds_the_gate_cells_it_is_configured_with(family, extra):
    """`<family>.model.cell_impl=gates` puts rnnlab.models.cells.Stacked in place of every fused module (the
    seq2seq decoder and the biLM's stacks included), with the variant; `forget_bias` initialises every LSTM."""
    fused = _build(family, _model_cfg(family, *extra))
    assert not any(isinstance(m, Stacked) for m in fused.modules())
    model = _build(family, _model_cfg(family, *extra, "cell_impl=gates", "cell_variant=no_output_gate", "forget_bias=1.0"))
    stacks = [m for m in model.modules() if isinstance(m, Stacked)]
    assert stacks and not any(isinstance(m, (nn.RNN, nn.LSTM, nn.GRU)) for m in model.modules())
    assert all(s.cell_name == "lstm" and s.variant == CELL_VARIANTS["lstm"].index("no_output_gate") for s in stacks)
    for stack in stacks:
        for name, bias in stack.named_parameters():
            if name.startswith("bias_"):
                size = bias.numel() // 4
                assert torch.all(bias[size:2 * size] == (1.0 if name.startswith("bias_ih") else 0.0))
    assert sorted(fused.state_dict()) == sorted(model.state_dict())  # same names: weights load both ways


@pytest.mark.parametrize("overrides,message", [
    (("cell_variant=peepholes",), "set classify.model.cell_impl=gates"),
    (("cell_impl=gates", "cell=gru", "cell_variant=coupled"), "allowed for gru: vanilla, no_reset_gate"),
    (("cell_impl=scripted",), "classify.model.cell_impl='scripted'"),
    # a forget-gate bias where nothing reads it
    (("cell_impl=gates", "cell_variant=coupled", "forget_bias=1.0"), "cell_variant=coupled, which computes f = 1 - i"),
    (("cell_impl=gates", "cell_variant=no_forget_gate", "forget_bias=1.0"), "has no forget gate"),
])
def test_family_configs_refuse_nonsense_cells(overrides, message):
    from rnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        _model_cfg("classify", *overrides)


@pytest.mark.parametrize("cell,impl,variant", [("lstm", "fused", "vanilla"), ("gru", "fused", "vanilla")] +
                         [(c, "gates", v) for c in ("lstm", "gru") for v in CELL_VARIANTS[c]])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_traced_gates_reproduce_the_encoder_and_follow_the_variant(cell, impl, variant, bidirectional):
    """The gate values the explorer shows are the model's own: recomputing the encoder with them gives its
    outputs exactly (fused or not, both directions, padding); a removed gate reads constant."""
    from rnnlab.models.cells import GATE_NAMES, saturation
    from rnnlab.models.encoders import RecurrentEncoder, padding_mask

    torch.manual_seed(0)
    encoder = RecurrentEncoder(cell, 5, 7, 2, bidirectional, impl=impl, variant=variant).double().eval()
    for name, p in encoder.named_parameters():
        if "peephole" in name:
            p.data.normal_()
    x, lengths = torch.randn(3, 6, 5, dtype=torch.double), torch.tensor([6, 4, 1])
    outputs, found = encoder.gates(x, lengths)
    torch.testing.assert_close(outputs, encoder(x, lengths))
    assert len(found) == 2 * (2 if bidirectional else 1)
    mask = padding_mask(lengths, 6)
    for entry in found:
        assert set(GATE_NAMES[cell]) <= set(entry)
        for gate in GATE_NAMES[cell]:
            real = entry[gate][mask]
            assert torch.all((real >= 0) & (real <= 1)) and torch.all(entry[gate][~mask] == 0)
            stats = saturation(entry[gate], mask)
            assert 0 <= stats["closed"] + stats["open"] <= 1
    if variant == "no_forget_gate":
        assert all(torch.all(e["forget"][mask] == 1) for e in found)
        assert saturation(found[0]["forget"], mask)["open"] == 1.0
    if variant == "no_update_gate":
        assert all(torch.all(e["update"][mask] == 0) for e in found)


@pytest.mark.parametrize("cell,variant", [(c, v) for c in ("lstm", "gru") for v in CELL_VARIANTS[c]])
def test_one_step_of_every_variant_equals_its_equation_written_out(cell, variant):
    """Each variant against its equation written out here, apart from cells.py (which picks a variant by its
    index in CELL_VARIANTS: a reordered tuple would fail this test)."""
    torch.manual_seed(3)
    module = Stacked(cell, 3, 4, variant=variant).double()
    for p in module.parameters():
        p.data.normal_()
    x, h = torch.randn(2, 1, 3, dtype=torch.double), torch.randn(2, 4, dtype=torch.double)
    c = torch.randn(2, 4, dtype=torch.double)
    a = x[:, 0] @ module.weight_ih_l0.t() + module.bias_ih_l0
    r = h @ module.weight_hh_l0.t() + module.bias_hh_l0
    sig, one = torch.sigmoid, torch.ones_like(h)
    if cell == "lstm":
        (ai, af, ag, ao), (ri, rf, rg, ro) = a.chunk(4, 1), r.chunk(4, 1)
        p_i, p_f, p_o = module.peephole_l0 if variant == "peepholes" else torch.zeros(3, 4, dtype=torch.double)
        i = one if variant == "no_input_gate" else sig(ai + ri + p_i * c)
        f = one if variant == "no_forget_gate" else (1 - i if variant == "coupled" else sig(af + rf + p_f * c))
        c_new = f * c + i * torch.tanh(ag + rg)
        o = one if variant == "no_output_gate" else sig(ao + ro + p_o * c_new)
        h_new = o * c_new if variant == "no_output_activation" else o * torch.tanh(c_new)
        _, (h1, c1) = module(x, (h.unsqueeze(0), c.unsqueeze(0)))
        torch.testing.assert_close(c1[0], c_new)
    else:
        (ar, az, an), (rr, rz, rn) = a.chunk(3, 1), r.chunk(3, 1)
        reset = one if variant == "no_reset_gate" else sig(ar + rr)
        update = 0 * one if variant == "no_update_gate" else sig(az + rz)
        h_new = (1 - update) * torch.tanh(an + reset * rn) + update * h
        _, h1 = module(x, h.unsqueeze(0))
    torch.testing.assert_close(h1[0], h_new)


@pytest.mark.parametrize("family,experiment", [("classify", "gate_ablation"), ("lm", "lm_gate_ablation")])
def test_the_gate_ablation_arms_compose_into_each_experiment(family, experiment):
    """Every arm of conf/gate_arm/ merges into the family's model group and validates; the arm's label and
    cell options are what the runs log."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from rnnlab.config import CONF_DIR, compose, family_view, validate

    arms = sorted(p.stem for p in (Path(CONF_DIR) / "gate_arm").glob("*.yaml"))
    assert len(arms) == 11
    view = family_view(compose([f"experiment={experiment}", f"+gate_arm@{family}.model=lstm_coupled"]), family)
    assert view.model.arm == "lstm_coupled" and view.model.cell_variant == "coupled"  # Hydra's own merge
    for arm in arms:  # every arm, merged as Hydra merges the group into the model node
        view.model = OmegaConf.merge(view.model, OmegaConf.load(Path(CONF_DIR) / "gate_arm" / f"{arm}.yaml"))
        validate(view)
        assert view.model.arm == arm and view.model.cell_impl == "gates" and arm.startswith(view.model.cell)
