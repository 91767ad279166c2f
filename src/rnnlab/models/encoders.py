"""Recurrent encoders built on PyTorch's fused nn.RNN / nn.LSTM / nn.GRU, exact under right padding.

Batches are right-padded and not packed (packing loses oneDNN on CPU). A forward RNN never sees the
padding before a real token, so its outputs are exact. The backward direction runs a forward RNN over
each sequence reversed *within its own length* (padding stays at the end), so it starts at the last
real token, not at the padding: padding never changes an output at a real position.
"""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.config import CELLS

# One fused PyTorch module per cell name of the config schema (rnnlab.config.CELLS, the one list of names).
RNN_CLASSES = dict(zip(CELLS, (nn.RNN, nn.LSTM, nn.GRU), strict=True))


def cell_options(model_cfg) -> dict:
    """A model config's cell options (`cell_impl`, `cell_variant`, `forget_bias`) as the keywords of
    `rnn_factory` and `set_forget_bias`; a model saved before these keys existed gets PyTorch's fused vanilla
    cell with its own initialisation."""
    return {"impl": model_cfg.get("cell_impl", "fused"), "variant": model_cfg.get("cell_variant", "vanilla"),
            "forget_bias": model_cfg.get("forget_bias")}


def init_cells(module: nn.Module, options: dict | None) -> None:
    """Apply the initialisation of `cell_options` (the forget-gate bias) to every LSTM in `module`."""
    if options and options.get("forget_bias") is not None:
        set_forget_bias(module, float(options["forget_bias"]))


def rnn_from_options(cell: str, options: dict | None):
    """`rnn_factory` for the impl and variant of `cell_options` (None: fused vanilla)."""
    options = options or {}
    return rnn_factory(cell, options.get("impl", "fused"), options.get("variant", "vanilla"))


def rnn_factory(cell: str, impl: str = "fused", variant: str = "vanilla"):
    """A constructor with the fused modules' signature, (input_size, hidden_size, num_layers=1, batch_first=True,
    dropout=0.0), of PyTorch's fused kernel (impl=fused) or of the cell from its gate equations (impl=gates,
    rnnlab.models.cells, with `variant`)."""
    from rnnlab.models.choices import check_cell

    check_cell(cell, impl, variant)
    if impl == "fused":
        return RNN_CLASSES[cell]
    from functools import partial

    from rnnlab.models.cells import Stacked

    return partial(Stacked, cell, variant=variant)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of x (batch, time, ...) within its length; padding stays in place."""
    batch, time = x.shape[:2]
    steps = torch.arange(time, device=x.device).unsqueeze(0)  # (1, time)
    lengths = lengths.to(x.device).unsqueeze(1)  # (batch, 1)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (batch, time)
    index = index.view(batch, time, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def padding_mask(lengths: torch.Tensor, time: int) -> torch.Tensor:
    """(batch, time) bool: True at real tokens."""
    return torch.arange(time, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def set_forget_bias(module: nn.Module, value: float) -> None:
    """Initialise the forget gate of every LSTM in `module` (fused or rnnlab.models.cells) so that sigmoid(b_ih + b_hh) starts at
    sigmoid(value) (Jozefowicz et al. 2015 recommend 1.0: the cell keeps its memory at the start of
    training). PyTorch orders an LSTM's gate biases input, forget, cell, output; b_ih takes the value and
    b_hh's forget part is zeroed, so their sum is exactly `value`. Other cells have no forget gate."""
    with torch.no_grad():
        for lstm in (m for m in module.modules() if isinstance(m, nn.LSTM) or getattr(m, "cell_name", "") == "lstm"):
            for name, bias in lstm.named_parameters():
                if name.startswith("bias_"):
                    size = bias.size(0) // 4
                    bias[size:2 * size] = value if name.startswith("bias_ih") else 0.0


class RecurrentEncoder(nn.Module):
    """Stacked (optionally bidirectional, optionally residual) recurrent encoder.

    forward(x (batch, time, input_size), lengths (batch,)) -> outputs (batch, time, output_size),
    with output_size = hidden_size * (2 if bidirectional else 1). Outputs at padded positions are 0.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, residual: bool = False, impl: str = "fused",
                 variant: str = "vanilla", forget_bias: float | None = None):
        super().__init__()
        if cell not in RNN_CLASSES:
            raise ValueError(f"cell={cell!r}; allowed: {', '.join(RNN_CLASSES)}")
        rnn_cls = rnn_factory(cell, impl, variant)
        self.cell, self.num_layers, self.bidirectional = cell, num_layers, bidirectional
        self.impl, self.variant = impl, variant
        self.residual = residual
        self.directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.directions
        # One fused multi-layer call when nothing needs per-layer handling.
        self.fused = not bidirectional and not residual
        if self.fused:
            self.rnn = rnn_cls(input_size, hidden_size, num_layers, batch_first=True,
                               dropout=dropout if num_layers > 1 else 0.0)
        else:
            self.layers = nn.ModuleList()
            for layer in range(num_layers):
                in_size = input_size if layer == 0 else self.output_size
                self.layers.append(nn.ModuleList(
                    rnn_cls(in_size, hidden_size, batch_first=True) for _ in range(self.directions)
                ))
            self.dropout = nn.Dropout(dropout)
        if forget_bias is not None:
            set_forget_bias(self, float(forget_bias))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = padding_mask(lengths, x.size(1)).unsqueeze(-1)  # (batch, time, 1)
        if self.fused:
            out, _ = self.rnn(x)  # (batch, time, hidden)
            return out * mask
        for index, directions in enumerate(self.layers):
            if index > 0:
                x = self.dropout(x)
            forward_out, _ = directions[0](x)  # (batch, time, hidden)
            parts = [forward_out]
            if self.bidirectional:
                backward_out, _ = directions[1](reverse_padded(x, lengths))
                parts.append(reverse_padded(backward_out, lengths))
            out = torch.cat(parts, dim=-1) * mask  # (batch, time, hidden * directions)
            x = out + x if self.residual and index > 0 else out
        return x

    @torch.no_grad()
    def gates(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, list[dict]]:
        """Every gate's value at every real token (eval mode), recomputed from the equations of
        rnnlab.models.cells with this encoder's own weights, fused or not: (outputs, as forward() gives them,
        [{"layer": k, "direction": "forward"|"backward", <gate>: (batch, time, hidden), ...}]), the backward
        direction's gates put back in word order. Zero at padding."""
        from rnnlab.models.cells import module_gates

        mask = padding_mask(lengths, x.size(1)).unsqueeze(-1)
        found = []
        if self.fused:
            out, layers = module_gates(self.rnn, self.cell, self.variant, x)
            found = [{"layer": k, "direction": "forward", **{n: v * mask for n, v in g.items()}}
                     for k, g in enumerate(layers)]
            return out * mask, found
        for index, directions in enumerate(self.layers):
            forward_out, (values,) = module_gates(directions[0], self.cell, self.variant, x)
            found.append({"layer": index, "direction": "forward", **{n: v * mask for n, v in values.items()}})
            parts = [forward_out]
            if self.bidirectional:
                backward_out, (values,) = module_gates(directions[1], self.cell, self.variant, reverse_padded(x, lengths))
                found.append({"layer": index, "direction": "backward",
                              **{n: reverse_padded(v, lengths) * mask for n, v in values.items()}})
                parts.append(reverse_padded(backward_out, lengths))
            out = torch.cat(parts, dim=-1) * mask
            x = out + x if self.residual and index > 0 else out
        return x, found

    def last_state(self, outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Final state of each direction: forward at position len-1, backward at position 0."""
        index = (lengths - 1).clamp(min=0).to(outputs.device)
        forward_last = outputs[torch.arange(outputs.size(0), device=outputs.device), index]
        if not self.bidirectional:
            return forward_last  # (batch, hidden)
        hidden = self.output_size // 2
        return torch.cat([forward_last[:, :hidden], outputs[:, 0, hidden:]], dim=-1)  # (batch, 2*hidden)
