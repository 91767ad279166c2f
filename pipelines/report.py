"""DVC stage `report`: reports/<task>/<dataset>.md (+ .png) comparing every variant of the grid."""

from pathlib import Path

from rnnlab.config import cli, grid_variants
from rnnlab.data.prepare import raw_dir
from rnnlab.io import read_json
from rnnlab.reporting.report import write_report


def run(cfg):
    task, dataset, paths = cfg.task.name, cfg.data.name, cfg.paths
    out = Path(paths.reports) / task / f"{dataset}.md"
    rows = write_report(task, dataset, grid_variants(cfg), Path(paths.metrics) / task / dataset,
                        Path(paths.models) / task / dataset, out,
                        read_json(raw_dir(cfg) / "stats.json"))
    for row in rows:
        print(f"report: {row['variant']:>16}  accuracy {row['accuracy']:.4f}  macro-F1 {row['macro_f1']:.4f}")
    print(f"report: wrote {out}")


if __name__ == "__main__":
    cli(run, "report")
