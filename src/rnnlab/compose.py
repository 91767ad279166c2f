"""`python -m rnnlab.compose params.yaml [override ...]`: write params.yaml composed from conf/."""

import sys
from pathlib import Path

from rnnlab.config import dump_params

if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: python -m rnnlab.compose OUTPUT.yaml [hydra overrides ...]", file=sys.stderr)
        raise SystemExit(2)
    dump_params(Path(sys.argv[1]), sys.argv[2:])
    print(f"composed {sys.argv[1]} from conf/ {' '.join(sys.argv[2:])}".rstrip())
