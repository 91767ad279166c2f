"""DVC stage `evaluate` / `translate_evaluate` (one matrix item).

classify: test accuracy / macro-F1, confusion matrix, misclassified examples.
translate: test BLEU / chrF (greedy and beam), sample translations, attention heatmaps.
"""

from pathlib import Path

from rnnlab.config import cli, variant_name
from rnnlab.data.prepare import tokenized_dir


def run(cfg):
    task, dataset, variant = cfg.task.name, cfg.data.name, variant_name(cfg)
    paths = cfg.paths
    args = (tokenized_dir(cfg), Path(paths.models) / task / dataset / variant,
            Path(paths.metrics) / task / dataset / f"{variant}.json", Path(paths.plots) / task / dataset / variant)
    if task == "translate":
        from rnnlab.training.translation import evaluate_translation

        m = evaluate_translation(*args)
        print(f"evaluate: {dataset} {variant}: BLEU greedy {m['bleu_greedy']:.2f}, beam{m['beam']} "
              f"{m['bleu_beam']:.2f}; chrF greedy {m['chrf_greedy']:.2f}, beam {m['chrf_beam']:.2f} "
              f"({m['sources']} sources)")
        return
    from rnnlab.training.evaluate import evaluate

    metrics = evaluate(*args)
    print(f"evaluate: {dataset} {variant}: accuracy {metrics['accuracy']:.4f}, "
          f"macro-F1 {metrics['macro_f1']:.4f} (n={metrics['n']})")


if __name__ == "__main__":
    cli(run, "evaluate")
