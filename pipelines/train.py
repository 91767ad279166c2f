"""DVC stage `train` / `translate_train` (one matrix item) and the interactive training CLI.

Under DVC:   python pipelines/train.py --params params.yaml model.cell=gru model.pooling=last out_dir=...
             python pipelines/train.py --params params.yaml task=translate translate.model.cell=gru ...
Interactive: python pipelines/train.py -m model.cell=lstm,gru model.pooling=last,attention data=trec
             python pipelines/train.py -m task=translate translate.model.attention=none,additive,dot,general
             python pipelines/train.py -m experiment=lstm_vs_gru      (conf/experiment/: seeds + report)
             python pipelines/train.py -m hparams_search=classify_optuna
             python pipelines/train.py checkpoint_dir=ckpt/run1   (killed? the same command resumes it)

Returns the best validation score (the task's monitor), the objective of a Hydra sweeper such as Optuna.
"""

import sys
from pathlib import Path

from rnnlab.config import cli
from rnnlab.training.train import train


def run(cfg):
    interactive = cfg.out_dir is None
    if interactive:  # the Hydra run/sweep folder of this job
        from hydra.core.hydra_config import HydraConfig

        from rnnlab.data.prepare import ensure_prepared

        ensure_prepared(cfg)
        job_dir = Path(HydraConfig.get().runtime.output_dir)
        out_dir, overrides = job_dir / "model", list(HydraConfig.get().overrides.task)
        checkpoints = Path(cfg.checkpoint_dir or job_dir / "checkpoints")
    else:
        out_dir, overrides = Path(cfg.out_dir), sys.argv[1:]
        checkpoints = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    summary = train(cfg, out_dir, overrides, checkpoints)
    if not summary:  # not rank 0
        return None
    objective = float(summary["best_" + cfg.task.monitor])
    best = {k: v for k, v in summary.items() if k.startswith("best_")}
    print(f"train: {summary['variant']} -> {out_dir}  {best}  "
          f"{summary['seconds_per_epoch']:.2f}s/epoch  mlflow run {summary['mlflow']['run_id']}")
    if interactive:  # outside DVC there is no evaluate stage: score the test split here
        from rnnlab.data.prepare import tokenized_dir

        args = (tokenized_dir(cfg), out_dir, job_dir / "metrics.json", job_dir / "plots")
        if cfg.task.name == "translate":
            from rnnlab.training.translation import evaluate_translation

            m = evaluate_translation(*args)
            print(f"test: BLEU greedy {m['bleu_greedy']:.2f}, beam{m['beam']} {m['bleu_beam']:.2f}")
            return objective
        from rnnlab.training.evaluate import evaluate

        metrics = evaluate(*args)
        print(f"test: accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")
    return objective


if __name__ == "__main__":
    cli(run, "train")
