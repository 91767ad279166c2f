"""`python -m rnnlab.compose params.yaml [override ...]`: write params.yaml composed from conf/.

The composition is validated for every task family before the file is replaced, so a bad override never
leaves a params.yaml that `dvc repro` would trip over; errors are one `error:` line and exit code 2."""

import os
import sys
import tempfile
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print("usage: python -m rnnlab.compose OUTPUT.yaml [hydra overrides ...]", file=sys.stderr)
        return 2
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from rnnlab import tasks
    from rnnlab.config import dump_params, family_view, validate
    from rnnlab.errors import RnnlabError

    out, overrides = Path(argv[0]), argv[1:]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".yaml", dir=out.parent)
    os.close(fd)
    try:
        dump_params(Path(tmp), overrides)
        cfg = OmegaConf.load(tmp)
        for family in tasks.names():
            if family in cfg:
                validate(family_view(cfg, family))
        os.replace(tmp, out)
    except (RnnlabError, HydraException, OmegaConfBaseException) as err:
        message = " ".join(str(err).split())
        print(f"error: {message}" + ("" if isinstance(err, RnnlabError) else
                                     " (conf/ lists every group and option; e.g. `data@<family>.data=<data set>`)"),
              file=sys.stderr)
        return 2
    finally:
        Path(tmp).unlink(missing_ok=True)
    print(f"composed {out} from conf/ {' '.join(overrides)}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
