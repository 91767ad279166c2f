"""DVC stage `<family>_train` (one matrix item) and the interactive training CLI.

Under DVC:   python pipelines/train.py --params params.yaml family=F F.model.cell=gru ... out_dir=... checkpoint_dir=...
Interactive: python pipelines/train.py [family=F] F.model.cell=gru          (F: a task family, default from conf)
             python pipelines/train.py -m F.model.cell=lstm,gru data@F.data=<dataset>
             python pipelines/train.py -m experiment=<name>               (conf/experiment/: seeds + report)
             python pipelines/train.py -m hparams_search=<name>           (conf/hparams_search/: Optuna)
             python pipelines/train.py checkpoint_dir=ckpt/run1   (killed? the same command resumes it)

Returns the best validation score (the family monitor), the objective of a Hydra sweeper such as Optuna."""

from rnnlab.config import cli
from rnnlab.stages import train

if __name__ == "__main__":
    cli(train, "train")
