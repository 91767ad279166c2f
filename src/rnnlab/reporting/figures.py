"""Figures of every report and evaluation: matplotlib without a display, saved atomically as PNG."""

from __future__ import annotations

from pathlib import Path


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1):
    """(figure, axes) of the given size in inches, drawn off-screen (Agg); axes as plt.subplots gives them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width, height))


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    """Write `fig` to `path` as PNG (temporary name, then rename) and close it."""
    import matplotlib.pyplot as plt

    from rnnlab.io import atomic_file

    fig.tight_layout()
    with atomic_file(Path(path)) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def confusion_png(confusion, label_names: list[str], title: str, path: Path, xlabel: str = "predicted",
                  ylabel: str = "actual") -> None:
    """A confusion matrix (rows actual, columns predicted) as a labelled heat map with its counts."""
    import numpy as np

    confusion = np.asarray(confusion)
    fig, ax = new_figure(1.2 * len(label_names) + 2.5, 1.0 * len(label_names) + 2)
    ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    ax.set_yticks(range(len(label_names)), label_names)
    for (i, j), v in np.ndenumerate(confusion):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > confusion.max() / 2 else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save_figure(fig, path)
