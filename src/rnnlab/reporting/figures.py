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
