"""Rebuild an "is the difference real?" report from MLflow runs alone (Hydra sweeps, dvc repro, dvc exp).

    python pipelines/compare.py --comparison NAME          # factor/metric/experiment from conf/experiment/NAME.yaml
    python pipelines/compare.py --experiment-name rnnlab-F-DATASET --factor F.model.cell   (F: a task family)
    python pipelines/compare.py --experiment-name rnnlab-F-DATASET --factor F.model.attention \\
        --metric test_bleu_beam --where F.model.cell=gru --out reports/compare/attention-gru.md

Writes the markdown report and one figure per group of comparable runs (default reports/compare/).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from rnnlab.errors import RnnlabError


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment-name", help="MLflow experiment (default: the comparison's)")
    parser.add_argument("--comparison", help="a name from conf/experiment/ (sets factor, metric, experiment)")
    parser.add_argument("--dataset", help="with --comparison: the data set of the runs (default: the family's default)")
    parser.add_argument("--factor", help="logged config key that differs between variants, e.g. <family>.model.cell")
    parser.add_argument("--metric", help="score to compare (default: the family's, e.g. test_acc)")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help="keep only runs whose logged param KEY equals VALUE (repeatable)")
    parser.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    parser.add_argument("--out", type=Path, help="report path (default reports/compare/<name>.md)")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    try:
        from rnnlab.reporting.compare import comparison_preset, write_comparison

        preset = comparison_preset(args.comparison, args.dataset) if args.comparison else {}
        factor = args.factor or preset.get("factor")
        metric = args.metric or preset.get("metric")
        experiment = args.experiment_name or preset.get("experiment")
        if not factor or not experiment:
            raise RnnlabError("give --factor and --experiment-name, or --comparison NAME (conf/experiment/NAME.yaml)")
        bad = [w for w in args.where if "=" not in w]
        if bad:
            raise RnnlabError(f"--where {bad[0]!r}: expected KEY=VALUE, e.g. --where <family>.model.pooling=last")
        if not 0 < args.alpha < 1:
            raise RnnlabError(f"--alpha {args.alpha}: must lie between 0 and 1, e.g. 0.05")
        where = dict(w.split("=", 1) for w in args.where)
        # the name the sweep's own report has (rnnlab.tracking.hydra_callbacks): <comparison>-<dataset>
        name = f"{args.comparison}-{preset['dataset']}" if args.comparison else f"{experiment}-{factor}"
        out = args.out or Path("reports/compare") / f"{name}.md"
        result = write_comparison(args.tracking_uri, experiment, factor, out, metric, where, alpha=args.alpha,
                                  command="python pipelines/compare.py " + shlex.join(argv),
                                  breakdown_metrics=preset.get("breakdown"), covarying=preset.get("covarying", ()))
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for group in result["groups"][:1]:
        for row in group["variants"]:
            print(f"compare: {row['variant']:>10}  {result['metric']} {row['mean']:.4f} +- "
                  f"{row['std']:.4f}  (n={row['n']})")
        for pair in group["pairs"]:
            print(f"compare: {pair['b']} - {pair['a']}: {pair['mean']:+.4f}  95% CI "
                  f"[{pair['ci'][0]:+.4f}, {pair['ci'][1]:+.4f}]  {pair['verdict']}")
    print(f"compare: wrote {result['report']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
