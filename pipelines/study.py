"""DVC stages `<family>_<study>`: one of a family's studies over its trained models (the `STUDIES` of
rnnlab/tasks/<family>/studies.py), named first, then the stage's usual arguments:

    python pipelines/study.py <study> --params params.yaml family=<family>     (under DVC)
    python pipelines/study.py <study> family=<family>                          (Hydra, interactive)
"""

import importlib
import sys

from omegaconf import DictConfig

from rnnlab.config import cli
from rnnlab.errors import ConfigError


def study(cfg: DictConfig, name: str | None) -> None:
    module = f"rnnlab.tasks.{cfg.family}.studies"
    try:
        studies = importlib.import_module(module).STUDIES
    except ModuleNotFoundError as err:
        if err.name != module:  # the studies exist but something they import does not
            raise
        raise ConfigError(f"family {cfg.family!r} has no studies (rnnlab/tasks/{cfg.family}/studies.py)") from None
    if name not in studies:
        raise ConfigError(f"study {name!r}: the {cfg.family} family's studies are {', '.join(studies)}; name one "
                          f"first, e.g. `python pipelines/study.py {next(iter(studies))} family={cfg.family}`")
    studies[name](cfg)


if __name__ == "__main__":
    named = len(sys.argv) > 1 and not sys.argv[1].startswith("-") and "=" not in sys.argv[1]
    chosen = sys.argv.pop(1) if named else None
    cli(lambda cfg: study(cfg, chosen), "study")
