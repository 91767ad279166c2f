"""DVC stage `evaluate` (one matrix item): test metrics, confusion matrix, misclassified examples."""

from pathlib import Path

from rnnlab.config import cli, variant_name
from rnnlab.data.prepare import tokenized_dir
from rnnlab.training.evaluate import evaluate


def run(cfg):
    task, dataset, variant = cfg.task.name, cfg.data.name, variant_name(cfg)
    paths = cfg.paths
    metrics = evaluate(
        tokenized_dir(cfg),
        Path(paths.models) / task / dataset / variant,
        Path(paths.metrics) / task / dataset / f"{variant}.json",
        Path(paths.plots) / task / dataset / variant,
    )
    print(f"evaluate: {dataset} {variant}: accuracy {metrics['accuracy']:.4f}, "
          f"macro-F1 {metrics['macro_f1']:.4f} (n={metrics['n']})")


if __name__ == "__main__":
    cli(run, "evaluate")
