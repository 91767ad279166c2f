"""The explorer: a local web page to try the trained models (`make explore`).

    python pipelines/explore.py                                   # http://127.0.0.1:7860, champions first
    python pipelines/explore.py --port 7861 --model FAMILY=models/<family>/<dataset>/<variant>
    python pipelines/explore.py --model FAMILY=models:/rnnlab-<family>-<dataset>@champion

A family without a trained model gets a page with the command that trains it. Only loopback addresses are
served. Stop it with Ctrl+C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnlab.errors import RnnlabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Try the trained rnnlab models in a local web page.")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the composed configuration")
    parser.add_argument("--model", action="append", default=[], metavar="FAMILY=REF",
                        help="offer this model first: a model folder, models:/<name>@<alias> or models:/<name>/<version>"
                             " (repeatable)")
    args = parser.parse_args(argv)
    try:
        from omegaconf import OmegaConf

        from rnnlab import tasks
        from rnnlab.config import load_params
        from rnnlab.explorer.app import build_app, check_host, serve
        from rnnlab.explorer.models import family_models

        check_host(args.host)
        if not 1 <= args.port <= 65535:
            raise RnnlabError(f"--port {args.port}: choose 1-65535 (e.g. 7860)")
        load_params(args.params, [])  # a clear error for a missing or broken params.yaml
        cfg = OmegaConf.load(args.params)
        chosen: dict[str, list[str]] = {}
        for item in args.model:
            family, sep, ref = item.partition("=")
            if not sep or not ref:
                raise RnnlabError(f"--model {item!r}: expected FAMILY=REF, e.g. --model "
                                  "FAMILY=models/<family>/<dataset>/<variant>")
            tasks.get(family)  # a clear error for an unknown family
            chosen.setdefault(family, []).append(ref)
        families = {name: family_models(cfg, name, Path.cwd(), chosen.get(name))
                    for name in tasks.names() if name in cfg}
        for found in families.values():
            print(f"explore: {found.family} on {found.dataset}: "
                  + (", ".join(r.label for r in found.models) or found.missing), file=sys.stderr)
        app = build_app(families)
        print(f"explore: serving on http://{check_host(args.host)}:{args.port} (Ctrl+C stops it)", file=sys.stderr)
        serve(app, args.host, args.port, block=True)
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
