"""Recurrent cells written from their gate equations, drop-in for nn.RNN / nn.LSTM / nn.GRU.

Each cell is one short TorchScript function holding its equations (scripted, so the loop over time runs
without Python's per-step overhead), in PyTorch's own gate order and parameter names
(`weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}`), so the state dict of a fused module
loads into it unchanged and both compute the same function (tests/test_cells.py proves outputs, final
states and gradients equal for several layers). `Stacked` runs a cell over time and layers with the fused
modules' interface (batch_first, dropout between layers, `forward(x, state) -> (outputs, state)`), so the
encoders and decoders use either implementation unchanged.
The loops take the input's time steps with `unbind` (one view each), not `xw[:, t]`, whose backward writes a
zero-filled copy of all of xw at every step: quadratic in the length.

Variants (Greff et al. 2017, "LSTM: a search space odyssey"; Jozefowicz et al. 2015) are options of the
cell, each a change to one equation; `CELL_VARIANTS` lists the allowed ones per cell.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnlab.models.choices import CELL_VARIANTS

LSTM_VARIANTS, GRU_VARIANTS = CELL_VARIANTS["lstm"], CELL_VARIANTS["gru"]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # blocks of hidden_size rows in weight_ih / weight_hh


def check_variant(cell: str, variant: str) -> None:
    if cell not in CELL_VARIANTS:
        raise ValueError(f"cell={cell!r}; allowed: {', '.join(CELL_VARIANTS)}")
    if variant not in CELL_VARIANTS[cell]:
        raise ValueError(f"cell variant {variant!r} does not exist for cell={cell}; allowed for {cell}: "
                         f"{', '.join(CELL_VARIANTS[cell])}")


def _variant_code(cell: str, variant: str) -> int:
    return CELL_VARIANTS[cell].index(variant)


@torch.jit.script
def rnn_layer(xw: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor):
    """Elman RNN over time:  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)   (xw holds W_ih x_t + b_ih)."""
    outputs = []
    for x_t in xw.unbind(1):
        h = torch.tanh(x_t + torch.mm(h, w_hh.t()) + b_hh)
        outputs.append(h)
    return torch.stack(outputs, 1), h


@torch.jit.script
def lstm_layer(xw: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor,
               peephole: torch.Tensor, variant: int):
    """LSTM over time (Hochreiter & Schmidhuber 1997, forget gate: Gers et al. 2000), PyTorch's gate order:

        i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate: how much new content enters
        f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate: how much of the cell is kept
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)         candidate content
        o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate: how much of the cell is shown
        c_t = f_t * c_{t-1} + i_t * g_t                          cell state (the additive memory path)
        h_t = o_t * tanh(c_t)                                     hidden state

    variant (LSTM_VARIANTS' index): 1 no_forget_gate (f = 1), 2 no_input_gate (i = 1), 3 no_output_gate
    (o = 1), 4 coupled (f = 1 - i), 5 no_output_activation (h = o * c), 6 peepholes (i and f also read
    c_{t-1}, o reads c_t, through the diagonal weights peephole[0..2]: Gers & Schmidhuber 2000)."""
    outputs = []
    for x_t in xw.unbind(1):
        i, f, g, o = (x_t + torch.mm(h, w_hh.t()) + b_hh).chunk(4, 1)
        if variant == 6:
            i = i + peephole[0] * c
            f = f + peephole[1] * c
        i = torch.ones_like(i) if variant == 2 else torch.sigmoid(i)
        if variant == 4:
            f = 1 - i
        elif variant == 1:
            f = torch.ones_like(f)
        else:
            f = torch.sigmoid(f)
        c = f * c + i * torch.tanh(g)
        if variant == 6:
            o = o + peephole[2] * c
        o = torch.ones_like(o) if variant == 3 else torch.sigmoid(o)
        h = o * c if variant == 5 else o * torch.tanh(c)
        outputs.append(h)
    return torch.stack(outputs, 1), h, c


@torch.jit.script
def gru_layer(xw: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor, variant: int):
    """GRU over time (Cho et al. 2014), PyTorch's formulation and gate order r, z, n:

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate: how much of the past the candidate reads
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate: how much of the past is kept
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     candidate state
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    variant (GRU_VARIANTS' index): 1 no_reset_gate (r = 1), 2 no_update_gate (z = 0: h_t = n_t)."""
    outputs = []
    for x_t in xw.unbind(1):
        xr, xz, xn = x_t.chunk(3, 1)
        hr, hz, hn = (torch.mm(h, w_hh.t()) + b_hh).chunk(3, 1)
        r = torch.ones_like(xr) if variant == 1 else torch.sigmoid(xr + hr)
        n = torch.tanh(xn + r * hn)
        if variant == 2:
            h = n
        else:
            z = torch.sigmoid(xz + hz)
            h = (1 - z) * n + z * h
        outputs.append(h)
    return torch.stack(outputs, 1), h


class Stacked(nn.Module):
    """A cell run over time and `num_layers` layers, with the interface of the fused nn.RNN / nn.LSTM / nn.GRU
    (batch_first only): forward(x (batch, time, input), state=None) -> (outputs (batch, time, hidden), state),
    state h (layers, batch, hidden), or (h, c) for the LSTM. Parameters are named and initialised as the fused
    module's (uniform in +-1/sqrt(hidden)), so `load_state_dict` works both ways (peephole weights aside)."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 dropout: float = 0.0, variant: str = "vanilla"):
        super().__init__()
        if not batch_first:
            raise ValueError("Stacked supports batch_first=True only (every rnnlab module uses it)")
        check_variant(cell, variant)
        self.cell_name, self.hidden_size, self.num_layers, self.dropout = cell, hidden_size, num_layers, dropout
        gates = GATES[cell] * hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        for layer in range(num_layers):
            size = input_size if layer == 0 else hidden_size
            for name, shape in ((f"weight_ih_l{layer}", (gates, size)), (f"weight_hh_l{layer}", (gates, hidden_size)),
                                (f"bias_ih_l{layer}", (gates,)), (f"bias_hh_l{layer}", (gates,))):
                self.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))
        self.variant = _variant_code(cell, variant)
        if cell == "lstm" and variant == "peepholes":
            for layer in range(num_layers):  # p_i, p_f, p_o per layer, starting at 0 (the vanilla LSTM)
                self.register_parameter(f"peephole_l{layer}", nn.Parameter(torch.zeros(3, hidden_size)))

    def forward(self, x: torch.Tensor, state=None):
        batch, time = x.shape[:2]
        lstm = self.cell_name == "lstm"
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros) if lstm else zeros
        h0, c0 = state if lstm else (state, None)
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                x = nn.functional.dropout(x, self.dropout, training=True)
            w_ih, w_hh = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"weight_hh_l{layer}")
            b_ih, b_hh = getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_hh_l{layer}")
            xw = x @ w_ih.t() + b_ih  # (batch, time, gates): the input's share of every step, in one product
            if lstm:
                peephole = getattr(self, f"peephole_l{layer}", None)
                peephole = xw.new_zeros(0) if peephole is None else peephole
                x, h, c = lstm_layer(xw, h0[layer], c0[layer], w_hh, b_hh, peephole, self.variant)
            elif self.cell_name == "gru":
                x, h = gru_layer(xw, h0[layer], w_hh, b_hh, self.variant)
                c = None
            else:
                x, h = rnn_layer(xw, h0[layer], w_hh, b_hh)
                c = None
            finals_h.append(h)
            finals_c.append(c)
        h_n = torch.stack(finals_h)
        return x, ((h_n, torch.stack(finals_c)) if lstm else h_n)


# ----------------------------------------------------------------------------- looking inside: gate values

GATE_NAMES = {"rnn": (), "lstm": ("input", "forget", "output"), "gru": ("reset", "update")}


def layer_gates(cell: str, variant: str, weights: dict, x: torch.Tensor, h: torch.Tensor | None = None,
                c: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """One layer run step by step in plain Python (the same equations as the scripted loops above), keeping
    every gate's value: (outputs (batch, time, hidden), {gate name: (batch, time, hidden)}), the gates of
    GATE_NAMES[cell] plus the LSTM's cell state ("cell"). `weights` holds w_ih, w_hh, b_ih, b_hh (and peephole
    for the peephole LSTM). For inspection (the explorer, gate statistics), not for training."""
    check_variant(cell, variant)
    batch, hidden = x.size(0), weights["w_hh"].size(1)
    h = x.new_zeros(batch, hidden) if h is None else h
    c = x.new_zeros(batch, hidden) if c is None else c
    xw = x @ weights["w_ih"].t() + weights["b_ih"]
    hb = weights["b_hh"]
    outputs, values = [], {name: [] for name in GATE_NAMES[cell] + (("cell",) if cell == "lstm" else ())}
    for t in range(x.size(1)):
        if cell == "rnn":
            h = torch.tanh(xw[:, t] + h @ weights["w_hh"].t() + hb)
        elif cell == "lstm":
            i, f, g, o = (xw[:, t] + h @ weights["w_hh"].t() + hb).chunk(4, 1)
            if variant == "peepholes":
                i, f = i + weights["peephole"][0] * c, f + weights["peephole"][1] * c
            i = torch.ones_like(i) if variant == "no_input_gate" else torch.sigmoid(i)
            f = 1 - i if variant == "coupled" else torch.ones_like(f) if variant == "no_forget_gate" else \
                torch.sigmoid(f)
            c = f * c + i * torch.tanh(g)
            if variant == "peepholes":
                o = o + weights["peephole"][2] * c
            o = torch.ones_like(o) if variant == "no_output_gate" else torch.sigmoid(o)
            h = o * c if variant == "no_output_activation" else o * torch.tanh(c)
            for name, value in zip(("input", "forget", "output", "cell"), (i, f, o, c)):
                values[name].append(value)
        else:
            xr, xz, xn = xw[:, t].chunk(3, 1)
            hr, hz, hn = (h @ weights["w_hh"].t() + hb).chunk(3, 1)
            r = torch.ones_like(xr) if variant == "no_reset_gate" else torch.sigmoid(xr + hr)
            z = torch.zeros_like(xz) if variant == "no_update_gate" else torch.sigmoid(xz + hz)
            h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            values["reset"].append(r)
            values["update"].append(z)
        outputs.append(h)
    return torch.stack(outputs, 1), {name: torch.stack(v, 1) for name, v in values.items()}


def module_gates(module: nn.Module, cell: str, variant: str, x: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
    """Every layer's gate values of a fused nn.RNN/LSTM/GRU or a `Stacked` module run on x (batch, time, input)
    from zero states (eval mode: no dropout between layers): (the last layer's outputs, one dict per layer)."""
    layers = []
    for k in range(module.num_layers):
        weights = {"w_ih": getattr(module, f"weight_ih_l{k}"), "w_hh": getattr(module, f"weight_hh_l{k}"),
                   "b_ih": getattr(module, f"bias_ih_l{k}"), "b_hh": getattr(module, f"bias_hh_l{k}")}
        if hasattr(module, f"peephole_l{k}"):
            weights["peephole"] = getattr(module, f"peephole_l{k}")
        x, values = layer_gates(cell, variant, weights, x)
        layers.append(values)
    return x, layers


def saturation(values: torch.Tensor, mask: torch.Tensor, low: float = 0.1, high: float = 0.9) -> dict:
    """How often a gate is saturated over real tokens (mask (batch, time) True): the share of values below `low`
    (nearly closed) and above `high` (nearly open), the thresholds of Karpathy et al. 2015 ("Visualizing and
    understanding recurrent networks"), and the mean."""
    real = values[mask.bool()]  # (tokens, hidden)
    if real.numel() == 0:
        raise ValueError("saturation needs at least one real token")
    return {"closed": float((real < low).float().mean()), "open": float((real > high).float().mean()),
            "mean": float(real.mean())}
