"""What every family's grid report shares: its rows (test metrics joined with training summaries), Markdown
tables, a grouped bar chart, and the choice of the champion variant (by validation score, never test)."""

from __future__ import annotations

from pathlib import Path

from rnnlab.errors import DataError
from rnnlab.io import read_json


def collect(variants: list[str], metrics_dir: Path, models_dir: Path) -> list[dict]:
    """Each variant's test metrics (metrics/...) joined with its training summary (models/...)."""
    rows = []
    for variant in variants:
        metrics_file = metrics_dir / f"{variant}.json"
        summary_file = models_dir / variant / "train_summary.json"
        for needed in (metrics_file, summary_file):
            if not needed.is_file():
                raise DataError(f"report: {needed} is missing; run the train and evaluate stages first")
        summary = read_json(summary_file)
        row = {"variant": variant, **read_json(metrics_file)}
        row.update({key: summary[key] for key in ("parameters", "trainable_parameters", "seconds_per_epoch",
                                                   "best_epoch", "fit_seconds")})
        row["epochs"] = summary["epochs_run"]
        rows.append(row)
    return rows


def markdown_table(headers: list[str], rows: list[list[str]], numeric: bool = True) -> list[str]:
    """Markdown table lines; with `numeric`, every column after the first is right-aligned."""
    align = ["---"] + [("---:" if numeric else "---")] * (len(headers) - 1)
    return ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


def bar_chart(rows: list[dict], series: list[tuple[str, str]], title: str, ylabel: str, path: Path,
              top: float | None = None, fmt: str = "%.3f") -> None:
    """Grouped bars: one group per variant, one bar per (metric key, legend label) in `series`."""
    from rnnlab.reporting.figures import new_figure, save_figure

    names = [r["variant"] for r in rows]
    fig, ax = new_figure(max(5, 1.4 * len(rows) + 2), 4)
    width = 0.8 / len(series)
    values = [r[key] for r in rows for key, _ in series]
    for k, (key, label) in enumerate(series):
        offset = (k - (len(series) - 1) / 2) * width
        bars = ax.bar([i + offset for i in range(len(rows))], [r[key] for r in rows], width, label=label)
        ax.bar_label(bars, fmt=fmt, fontsize=8)
    if top is not None:  # scores with a known maximum: zoom on the range the bars use
        ax.set_ylim(max(0.0, min(values) - 0.1 * top), top)
    else:
        ax.set_ylim(0, max(values) * 1.15 if max(values) > 0 else 1)
    ax.set_xticks(list(range(len(rows))), names)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower right")
    save_figure(fig, path)


def pick_champion(monitor: str, mode: str, models_dir: Path, variants: list[str]) -> tuple[str, dict]:
    """The variant whose training reached the best validation score `monitor` (`mode` max | min); model
    selection never sees the test split. Ties go to the variant name that sorts last."""
    summaries = {v: read_json(Path(models_dir) / v / "train_summary.json") for v in variants}
    sign = 1 if mode == "max" else -1
    best = max(variants, key=lambda v: (sign * summaries[v]["best_" + monitor], v))
    return best, summaries[best]


ONE_SEED_NOTE = ("One seed per variant: differences of about one point are within the run-to-run noise of a test "
                 "set this size; compare across seeds (`experiment=` comparisons, docs/configuration.md) before "
                 "drawing conclusions.")
