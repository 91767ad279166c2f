"""DVC stage `train` (one matrix item) and the interactive training CLI.

Under DVC:   python pipelines/train.py --params params.yaml model.cell=gru model.pooling=last out_dir=...
Interactive: python pipelines/train.py -m model.cell=lstm,gru model.pooling=last,attention data=trec
"""

import sys
from pathlib import Path

from rnnlab.config import cli
from rnnlab.training.train import train


def run(cfg):
    overrides = sys.argv[1:]
    if cfg.out_dir is None:  # interactive: the Hydra run/sweep folder of this job
        from hydra.core.hydra_config import HydraConfig

        from rnnlab.data.prepare import ensure_prepared

        ensure_prepared(cfg)
        out_dir = Path(HydraConfig.get().runtime.output_dir) / "model"
        overrides = list(HydraConfig.get().overrides.task)
    else:
        out_dir = Path(cfg.out_dir)
    summary = train(cfg, out_dir, overrides)
    if summary:
        best = {k: v for k, v in summary.items() if k.startswith("best_")}
        print(f"train: {summary['variant']} -> {out_dir}  {best}  "
              f"{summary['seconds_per_epoch']:.2f}s/epoch  mlflow run {summary['mlflow']['run_id']}")


if __name__ == "__main__":
    cli(run, "train")
