"""Learning curves as DVC plots: one CSV table per training and quantity, rewritten whole after every epoch.

A DVC train stage passes `curves_dir=<paths.plots>/<family>/<dataset>/curves`; the training then keeps

    <curves_dir>/loss/<variant>.csv        epoch, train_loss, val_loss
    <curves_dir>/<metric>/<variant>.csv    epoch, train_<metric> (where the family computes it), val_<metric>

where <metric> is the family's learning-curve metric (`compare_metrics[1]` without its `val_` prefix: acc, ppl,
f1, bleu, exact) and <variant> the name of the stage's model folder. dvc.yaml declares the files as outputs of
the train stages and each folder as a top-level plot (x: epoch, y: the columns), so `dvc plots show` draws a
chart per variant and `dvc plots diff` compares them across commits and experiments.

Each write renders the history the training holds, which a resumed training restores from its checkpoint
(rnnlab.training.callbacks.History), so a file never holds an epoch twice or misses one; it is written with
an atomic rename, so a reader never sees half a table.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rnnlab.io import write_text


def curve_metric(family) -> str:
    """The family's learning-curve metric without the split prefix (`val_acc` -> `acc`)."""
    name = family.compare_metrics[1]
    return name[len("val_"):] if name.startswith("val_") else name


def curve_columns(metric: str, rows: list[dict]) -> dict[str, list[str]]:
    """{folder name: the columns of its table}: the loss and the metric, each for the splits the history has."""
    present = set().union(*rows) if rows else set()
    tables = {}
    for quantity in ("loss", metric):
        columns = [f"{split}_{quantity}" for split in ("train", "val") if f"{split}_{quantity}" in present]
        if columns:
            tables[quantity] = ["epoch", *columns]
    return tables


def render(columns: list[str], rows: list[dict]) -> str:
    """The CSV text of `columns` over the history rows (one per epoch, in epoch order); a value the epoch did
    not log is left empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in sorted(rows, key=lambda r: r["epoch"]):
        writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return out.getvalue()


def curve_paths(curves_dir: str | Path, variant: str, metric: str, rows: list[dict]) -> dict[Path, list[str]]:
    return {Path(curves_dir) / quantity / f"{variant}.csv": columns
            for quantity, columns in curve_columns(metric, rows).items()}


def write_curves(curves_dir: str | Path, variant: str, metric: str, rows: list[dict]) -> list[Path]:
    """Write (replace) every table of the history `rows`; returns the files written."""
    epochs = [row["epoch"] for row in rows]
    if len(set(epochs)) != len(epochs):  # a history is one row per epoch; anything else is a bug to surface
        raise ValueError(f"the training history holds an epoch twice: {epochs}")
    written = []
    for path, columns in curve_paths(curves_dir, variant, metric, rows).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, render(columns, rows))
        written.append(path)
    return written


def read_curve(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
