"""Inside a trained classifier's cells: each gate's value at each word of a sentence (the explorer's gates view),
and how often each gate saturates over the test set (the `classify_gates` study stage).

The values are recomputed from the gate equations of rnnlab.models.cells with the model's own weights, fused
kernels or not (RecurrentEncoder.gates; tests/test_cells.py proves they reproduce the encoder's outputs).
"""

from __future__ import annotations

import numpy as np
import torch

from rnnlab.errors import DataError
from rnnlab.models.cells import GATE_NAMES, saturation

# What each gate does, for the figure's titles and the report.
GATE_MEANING = {"input": "how much new content enters the cell", "forget": "how much of the cell is kept",
                "output": "how much of the cell is shown", "reset": "how much of the past the candidate reads",
                "update": "how much of the past state is kept"}


def _check_gated(model) -> None:
    encoder = model.encoder
    if getattr(encoder, "cell", None) not in ("lstm", "gru"):
        raise DataError(f"this model's encoder is {getattr(encoder, 'cell', 'unknown')!r}: only LSTM and GRU "
                        "cells have gates; pick an lstm or gru model")


@torch.no_grad()
def sentence_gates(loaded, text: str) -> dict:
    """Every gate of every layer and direction at each word of `text` (a loaded Classifier):
    {"words": [...], "cell", "variant", "layers": [{"layer", "direction", "gates": {name: (words, hidden)}}]}.
    Bad text is refused as in classify_texts; an RNN model has no gates (DataError)."""
    from rnnlab.data.tokenizer import UNK_ID
    from rnnlab.predict import check_text

    model, tokenizer = loaded.model, loaded.tokenizer
    _check_gated(model)
    text = check_text(text)
    ids = tokenizer.encode(text, add_special_tokens=False).ids[:int(loaded.info["max_length"])]
    if not ids or all(i == UNK_ID for i in ids):
        raise DataError(f"none of the words of {text[:60]!r} is in the model's vocabulary; rephrase with more "
                        "common words")
    batch, lengths = torch.tensor([ids]), torch.tensor([len(ids)])
    model.eval()
    _, found = model.encoder.gates(model.encoder_inputs(batch, lengths), lengths)
    layers = [{"layer": e["layer"], "direction": e["direction"],
               "gates": {g: e[g][0].float().numpy() for g in GATE_NAMES[model.encoder.cell]}} for e in found]
    return {"words": [tokenizer.id_to_token(i) for i in ids], "cell": model.encoder.cell,
            "variant": model.encoder.variant, "layers": layers}


def gates_figure(view: dict, title: str = ""):
    """Each gate's values over the words of a sentence (`sentence_gates`' view): one column per direction, one
    row per layer and gate; in each, a heatmap of the hidden units (rows) by words (columns), 0 (closed, dark)
    to 1 (open, light), under a line of the gate's mean over the units at each word. The colour bar (0-1) and
    the title on top, the words under each column, what each gate does on the right. Laid out with
    tight_layout (a plain Figure, nothing kept by pyplot; `save_figure`'s own tight_layout changes nothing).
    The figure widens with the sentence (about 0.22 inch a word and direction): made for 1 to 30 or so words, any
    number of units and layers."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    words = view["words"]
    directions = list(dict.fromkeys(entry["direction"] for entry in view["layers"]))
    layers = list(dict.fromkeys(entry["layer"] for entry in view["layers"]))
    found = {(entry["layer"], entry["direction"]): entry["gates"] for entry in view["layers"]}
    gates = list(view["layers"][0]["gates"])
    groups = [(layer, gate) for layer in layers for gate in gates]  # a row of panels each
    longest = max(len(w) for w in words)
    column = max(3.2, 0.22 * len(words) + 0.4)  # inches of one direction's panels
    strip, heat, bar = 0.45, 1.5, 0.12
    below = 0.35 + 0.065 * min(longest, 18)  # the rotated word labels
    fig = Figure(figsize=(2.7 + column * len(directions), 1.0 + bar + 2.45 * len(groups) + below))
    grid = fig.add_gridspec(1 + len(groups), len(directions), height_ratios=[bar] + [strip + heat] * len(groups))

    width = column * len(directions)  # the colour bar: at most 4 inches wide, centred
    side = max(0.0, width - 4.0) / 2
    cax = fig.add_subplot(grid[0, :].subgridspec(1, 3, width_ratios=[side + 1e-3, width - 2 * side, side + 1e-3])[1])
    image = None
    for col, direction in enumerate(directions):
        bottom = None
        for row, (layer, gate) in enumerate(groups):
            values = found[(layer, direction)][gate].T  # (hidden, words)
            pair = grid[1 + row, col].subgridspec(2, 1, height_ratios=[strip, heat], hspace=0.08)
            top = fig.add_subplot(pair[0])
            ax = fig.add_subplot(pair[1], sharex=top)
            image = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
            units = values.shape[0]
            ax.set_yticks([0, units - 1], ["1", str(units)] if col == 0 else [], fontsize=7)
            means = values.mean(0)
            top.axhline(0.5, color="0.8", lw=0.6, zorder=0)
            top.plot(range(len(words)), means, color="black", lw=1.0, marker="o", ms=2.5)
            top.set_ylim(0.0, 1.0)
            top.set_yticks([0.0, 1.0], ["0", "1"] if col == 0 else [], fontsize=6)
            top.set_xlim(-0.5, len(words) - 0.5)
            top.tick_params(axis="x", bottom=False, labelbottom=False)
            for spine in ("top", "right"):
                top.spines[spine].set_visible(False)
            if row == 0:
                reads = "left to right" if direction == "forward" else "right to left"
                top.set_title(f"{direction} (reads {reads})", fontsize=9)
            if col == 0:
                where = f"layer {layer}, " if len(layers) > 1 else ""
                ax.set_ylabel(f"{gate} gate\n({where}units)", fontsize=8)
                top.set_ylabel("mean", fontsize=7)
            if col == len(directions) - 1:
                ax.text(1.02, 0.5, textwrap.fill(GATE_MEANING.get(gate, ""), 20), transform=ax.transAxes,
                        fontsize=7, ha="left", va="center", color="0.3")
            ax.tick_params(axis="x", labelbottom=False, length=0)
            bottom = ax
        bottom.tick_params(axis="x", labelbottom=True, length=2)
        bottom.set_xticks(range(len(words)))
        rotation = 0 if len(words) <= 6 and longest <= 8 else 60
        bottom.set_xticklabels([w if len(w) <= 18 else w[:17] + "…" for w in words], rotation=rotation,
                               ha="right" if rotation else "center", rotation_mode="anchor", fontsize=8)
    fig.colorbar(image, cax=cax, orientation="horizontal")
    cax.tick_params(labelsize=7, length=2)
    cax.set_xticks([0.0, 0.25, 0.5, 0.75, 1.0])
    cax.set_xlabel("gate value: 0 closed, 1 open", fontsize=7, labelpad=1)
    heading = title or f"{view['cell'].upper()} gates ({view['variant']}), {len(words)} word{'s' * (len(words) > 1)}"
    cax.set_title(textwrap.fill(heading, int(12 * fig.get_figwidth())), fontsize=10)
    fig.tight_layout(pad=0.6, h_pad=0.9)
    return fig


@torch.no_grad()
def gate_statistics(model, loader, low: float = 0.1, high: float = 0.9) -> list[dict]:
    """Saturation of every gate per layer and direction over all real tokens of `loader`'s batches: rows
    {"layer", "direction", "gate", "closed" (share < low), "open" (share > high), "mean", "tokens"}."""
    from rnnlab.models.encoders import padding_mask

    _check_gated(model)
    model.eval()
    sums: dict[tuple, dict] = {}
    for batch in loader:
        ids, lengths = batch["ids"], batch["lengths"]
        _, found = model.encoder.gates(model.encoder_inputs(ids, lengths), lengths)
        mask = padding_mask(lengths, ids.size(1))
        tokens = int(mask.sum())
        for entry in found:
            for gate in GATE_NAMES[model.encoder.cell]:
                stats = saturation(entry[gate], mask, low, high)
                acc = sums.setdefault((entry["layer"], entry["direction"], gate),
                                      {"closed": 0.0, "open": 0.0, "mean": 0.0, "tokens": 0})
                for key in ("closed", "open", "mean"):
                    acc[key] += stats[key] * tokens
                acc["tokens"] += tokens
    rows = []
    for (layer, direction, gate), acc in sums.items():
        n = acc["tokens"]
        rows.append({"layer": layer, "direction": direction, "gate": gate, "tokens": n,
                     **{key: round(acc[key] / n, 4) for key in ("closed", "open", "mean")}})
    return rows


def shuffled(ids: list[list[int]], seed: int) -> list[list[int]]:
    """Each sentence's words in a random order (one generator, seeded: the same shuffle every run)."""
    rng = np.random.default_rng(seed)
    return [list(np.asarray(s)[rng.permutation(len(s))]) for s in ids]
