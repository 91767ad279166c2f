"""DVC stage `report` / `translate_report`: reports/<task>/<dataset>.md (+ .png) comparing the grid."""

from pathlib import Path

from rnnlab.config import cli, grid_variants
from rnnlab.data.prepare import raw_dir
from rnnlab.io import read_json
from rnnlab.reporting.report import write_report, write_translation_report


def run(cfg):
    task, dataset, paths = cfg.task.name, cfg.data.name, cfg.paths
    out = Path(paths.reports) / task / f"{dataset}.md"
    folders = {name: Path(paths[name]) / task / dataset for name in ("metrics", "models", "plots")}
    stats = read_json(raw_dir(cfg) / "stats.json")
    if task == "translate":
        rows = write_translation_report(dataset, grid_variants(cfg), folders["metrics"], folders["models"],
                                        folders["plots"], out, stats)
        for row in rows:
            print(f"report: {row['variant']:>16}  BLEU greedy {row['bleu_greedy']:.2f}  "
                  f"beam {row['bleu_beam']:.2f}  chrF {row['chrf_beam']:.2f}")
    else:
        rows = write_report(task, dataset, grid_variants(cfg), folders["metrics"], folders["models"], out, stats)
        for row in rows:
            print(f"report: {row['variant']:>16}  accuracy {row['accuracy']:.4f}  macro-F1 {row['macro_f1']:.4f}")
    print(f"report: wrote {out}")


if __name__ == "__main__":
    cli(run, "report")
