"""Is the difference real? Compare model variants across seeds from MLflow runs alone.

Runs are read from one MLflow experiment, whoever launched them (Hydra sweeps, `dvc repro`,
`dvc exp run`). A run is comparable with another when their logged configurations agree on every
key except the compared factor (e.g. `<family>.model.cell`) and the seed; bookkeeping keys (paths, tracking,
system info, output folders) are ignored. Within such a group each variant has one score per seed
(the newest run wins when a seed was run twice; the report says how far the reruns agreed), and
every pair of variants is compared on the seeds they share: mean paired difference, its 95%
t-interval, the paired t-test p-value and a Holm-adjusted p-value over all pairs of the group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from rnnlab.errors import ConfigError

# Logged params that do not change what is trained: root keys, and keys of the run's family subtree
# (written `<family>.<key>`, the public spelling) with the family prefix taken off.
IGNORED_PREFIXES = ("system.", "tracking.", "paths.", "grid.", "comparison.", "hydra.", "studies.",
                    "long_range.")  # long_range.: the study settings that runs before 2026-12-05 logged
# trainer.num_threads: how many CPU threads ran the same computation (a sweep of single-threaded jobs beside
# the pipeline's run); like the CPU type, it can change float rounding, not the model or the data.
IGNORED_KEYS = {"out_dir", "checkpoint_dir", "curves_dir", "seed", "trainer.progress_bar", "trainer.num_workers",
                "trainer.num_threads"}


def bookkeeping(key: str, family: str | None) -> bool:
    """True for a logged param that does not change what is trained."""
    if family and key.startswith(family + "."):
        key = key[len(family) + 1:]
    return key in IGNORED_KEYS or key.startswith(IGNORED_PREFIXES)


@dataclass
class Run:
    run_id: str
    name: str
    variant: str
    seed: int
    score: float
    start_time: int
    launcher: str
    params: dict[str, str]
    parameters: float | None = None
    train_seconds: float | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    parent: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # every metric the run logged (last values)


def load_runs(tracking_uri: str, experiment_name: str, factor: str, metric: str | None = None,
              curve_metric: str | None = None, where: dict[str, str] | None = None) -> tuple[list[Run], str, str]:
    """Finished runs of the experiment that logged `factor` and `metric`. Returns (runs, metric, curve metric)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ConfigError(f"no MLflow experiment named {experiment_name!r} at {tracking_uri}; "
                          f"existing experiments: {', '.join(names) or '(none)'}")
    found = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'", max_results=50000)
    found = [r for r in found if factor in r.data.params]
    if not found:
        raise ConfigError(f"no finished run of {experiment_name!r} logged the parameter {factor!r}; "
                          "give the config key that differs between the variants as logged, <family>.<group>.<key>, "
                          "e.g. <family>.model.cell or <family>.model.bidirectional")
    family = found[0].data.params.get("family")
    if (metric is None or curve_metric is None) and family is not None:
        from rnnlab import tasks

        default_metric, default_curve = tasks.get(family).compare_metrics
        metric, curve_metric = metric or default_metric, curve_metric or default_curve
    if metric is None or curve_metric is None:
        raise ConfigError(f"the runs of {experiment_name!r} logged no `family` param: give --metric (e.g. test_acc)")
    runs = []
    for r in found:
        params = r.data.params
        if metric not in r.data.metrics or any(params.get(k) != v for k, v in (where or {}).items()):
            continue
        history = client.get_metric_history(r.info.run_id, curve_metric)
        epochs = client.get_metric_history(r.info.run_id, "epoch_seconds")
        runs.append(Run(
            run_id=r.info.run_id, name=r.info.run_name or r.info.run_id, variant=params[factor],
            seed=int(params.get("seed", 0)), score=float(r.data.metrics[metric]), start_time=r.info.start_time,
            launcher=r.data.tags.get("launcher", "?"), params=dict(params),
            parameters=r.data.metrics.get("parameters"),
            train_seconds=sum(m.value for m in epochs) if epochs else None,
            curve=sorted((m.step, m.value) for m in history), parent=r.data.tags.get("mlflow.parentRunId"),
            metrics=dict(r.data.metrics)))
    if not runs:
        raise ConfigError(f"no finished run of {experiment_name!r} with {factor!r} has the metric {metric!r}"
                          + (f" and matches {where}" if where else "")
                          + "; test metrics are logged by the evaluate stage or an interactive training run")
    return runs, metric, curve_metric


def setting_key(params: dict[str, str], factor: str, covarying: tuple[str, ...] = ()) -> tuple:
    """The settings a run must share with another to be compared. Keys with a `/` are Lightning's copies of
    the module's hyperparameters (`model_cfg/cell`), which repeat the config's own `model.*` keys. Keys under a
    `covarying` prefix change with the factor by construction (a config group swapped as a whole, e.g. the
    embeddings group whose `name` is the factor: its package and file differ too) and are left out."""
    family = params.get("family")
    return tuple(sorted((k, v) for k, v in params.items()
                        if k != factor and "/" not in k and not bookkeeping(k, family)
                        and not any(k == c or k.startswith(c + ".") for c in covarying)))


@dataclass
class Group:
    """Comparable runs: same settings, one run per (variant, seed) after rerun de-duplication."""
    settings: dict[str, str]
    runs: dict[str, dict[int, Run]]           # variant -> seed -> newest run
    reruns: dict[tuple[str, int], list[float]]  # (variant, seed) -> scores of every run of that seed


def group_runs(runs: list[Run], factor: str, covarying: tuple[str, ...] = ()) -> list[Group]:
    by_key: dict[tuple, list[Run]] = {}
    for run in runs:
        by_key.setdefault(setting_key(run.params, factor, covarying), []).append(run)
    groups = []
    for key, members in by_key.items():
        newest: dict[str, dict[int, Run]] = {}
        scores: dict[tuple[str, int], list[float]] = {}
        for run in sorted(members, key=lambda r: r.start_time):
            newest.setdefault(run.variant, {})[run.seed] = run
            scores.setdefault((run.variant, run.seed), []).append(run.score)
        groups.append(Group(dict(key), newest, {k: v for k, v in scores.items() if len(v) > 1}))
    # the most informative group first: most variants, then most runs
    return sorted(groups, key=lambda g: (-len(g.runs), -sum(map(len, g.runs.values()))))


def paired_difference(a: dict[int, float], b: dict[int, float], alpha: float = 0.05) -> dict:
    """b - a on the seeds both have: mean, sample sd, (1-alpha) t-interval, two-sided paired t-test p."""
    from scipy import stats

    seeds = sorted(set(a) & set(b))
    d = np.array([b[s] - a[s] for s in seeds], dtype=float)
    n = len(d)
    out = {"seeds": seeds, "n": n, "mean": float(d.mean()) if n else math.nan,
           "sd": math.nan, "ci": (math.nan, math.nan), "p": math.nan}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * sd / math.sqrt(n)
    out.update(sd=sd, ci=(out["mean"] - half, out["mean"] + half))
    if sd == 0.0:  # every seed gave the same difference: no spread to test against
        out["p"] = 1.0 if out["mean"] == 0.0 else 0.0
    else:
        t = out["mean"] / (sd / math.sqrt(n))
        out["p"] = float(2 * stats.t.sf(abs(t), n - 1))
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted)."""
    valid = [(p, i) for i, p in enumerate(pvalues) if not math.isnan(p)]
    m, adjusted, running = len(valid), [math.nan] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(diff: dict, p_adjusted: float, alpha: float = 0.05) -> str:
    if diff["n"] < 2:
        return f"cannot tell: {diff['n']} paired seed(s), at least 2 are needed"
    low, high = diff["ci"]
    if not math.isnan(p_adjusted) and p_adjusted < alpha:
        return "real difference (significant at 5%)"
    if low <= 0 <= high:
        return "not significant: the 95% interval includes 0"
    return "not significant after the Holm correction for several comparisons"


def order_variants(variants: list[str]) -> list[str]:
    preferred = ["lstm", "gru", "rnn", "none", "additive", "dot", "general", "last", "mean", "max",
                 "attention", "False", "True", "frozen", "finetune", "random"]
    return sorted(variants, key=lambda v: (preferred.index(v) if v in preferred else len(preferred), v))


def analyse(group: Group, alpha: float = 0.05) -> dict:
    variants = order_variants(list(group.runs))
    rows = []
    for v in variants:
        scores = np.array([run.score for run in group.runs[v].values()], dtype=float)
        runs = list(group.runs[v].values())
        rows.append({
            "variant": v, "n": len(scores), "mean": float(scores.mean()),
            "std": float(scores.std(ddof=1)) if len(scores) > 1 else math.nan,
            "min": float(scores.min()), "max": float(scores.max()),
            "seeds": sorted(group.runs[v]),
            "parameters": runs[0].parameters,
            "train_seconds": _mean([r.train_seconds for r in runs]),
            "launchers": sorted({r.launcher for r in runs}),
        })
    pairs = []
    for a, b in combinations(variants, 2):
        diff = paired_difference({s: r.score for s, r in group.runs[a].items()},
                                 {s: r.score for s, r in group.runs[b].items()}, alpha)
        pairs.append({"a": a, "b": b, **diff})
    for pair, p_adj in zip(pairs, holm([p["p"] for p in pairs])):
        pair["p_holm"] = p_adj
        pair["verdict"] = verdict(pair, p_adj, alpha)
    return {"variants": rows, "pairs": pairs}


def breakdown(group: Group, metrics: list[str], alpha: float = 0.05) -> list[dict]:
    """Further metrics of the same runs (e.g. BLEU per sentence-length bucket): each variant's mean and std,
    and each variant's paired difference from the first (the baseline, e.g. `none`). Seeds whose run did not
    log a metric are left out of that metric's row."""
    variants = order_variants(list(group.runs))
    rows = []
    for metric in metrics:
        values = {v: {seed: run.metrics[metric] for seed, run in group.runs[v].items() if metric in run.metrics}
                  for v in variants}
        if not any(values.values()):
            continue
        row = {"metric": metric, "variants": {}, "differences": {}}
        for v in variants:
            scores = np.array(list(values[v].values()), dtype=float)
            row["variants"][v] = {"n": len(scores), "mean": float(scores.mean()) if len(scores) else math.nan,
                                  "std": float(scores.std(ddof=1)) if len(scores) > 1 else math.nan}
        for v in variants[1:]:
            row["differences"][v] = paired_difference(values[variants[0]], values[v], alpha)
        rows.append(row)
    return rows


def breakdown_lines(rows: list[dict], scale: float) -> list[str]:
    from rnnlab.reporting.report import markdown_table

    if not rows:
        return []
    variants = list(rows[0]["variants"])
    base = variants[0]
    lines = ["", "### Breakdown", "", f"Mean +- std over seeds; the differences from `{base}` are paired by seed "
             "(95% t-interval, two-sided paired t-test, not Holm-adjusted).", ""]
    lines += markdown_table(
        ["metric", *variants, *(f"{v} - {base}" for v in variants[1:])],
        [[f"`{row['metric']}`",
          *(f"{_fmt(row['variants'][v]['mean'] * scale, 2)} +- {_fmt(row['variants'][v]['std'] * scale, 2)}"
            for v in variants),
          *(f"{_fmt(d['mean'] * scale, 2)} [{_fmt(d['ci'][0] * scale, 2)}, {_fmt(d['ci'][1] * scale, 2)}], "
            f"p {_fmt(d['p'], 3)}" for d in (row["differences"][v] for v in variants[1:]))]
         for row in rows])
    return lines + [""]


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def plot_group(group: Group, analysis: dict, factor: str, metric: str, curve_metric: str, title: str,
               path: Path) -> None:
    """2x2 figure: mean +- std bars with each seed's score, validation curves (mean +- std over seeds),
    score vs parameter count, score vs training time."""
    from rnnlab.reporting.figures import new_figure, save_figure

    fig, axes = new_figure(11, 8, 2, 2)
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = analysis["variants"]
    names = [r["variant"] for r in rows]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ax = axes[0][0]
    x = np.arange(len(rows))
    ax.bar(x, [r["mean"] for r in rows], yerr=[0 if math.isnan(r["std"]) else r["std"] for r in rows],
           capsize=6, color=[colors[i % len(colors)] for i in range(len(rows))], alpha=0.6)
    for i, v in enumerate(names):
        scores = [run.score for run in group.runs[v].values()]
        ax.scatter(np.full(len(scores), i) + np.linspace(-0.12, 0.12, len(scores)), scores, color="black", s=14,
                   zorder=3)
    lows = [min(run.score for run in group.runs[v].values()) for v in names]
    highs = [max(run.score for run in group.runs[v].values()) for v in names]
    span = max(highs) - min(lows) or abs(max(highs)) * 0.05 or 1.0
    ax.set_ylim(min(lows) - span, max(highs) + span)
    ax.set_xticks(x, names)
    ax.set_title(f"{metric}: mean ± std, dots = seeds (axis not from 0)")
    ax = axes[0][1]
    for i, v in enumerate(names):
        curves = [dict(run.curve) for run in group.runs[v].values() if run.curve]
        if not curves:
            continue
        steps = sorted(set().union(*curves))
        values = [[c[s] for c in curves if s in c] for s in steps]
        mean = np.array([np.mean(vals) for vals in values])
        std = np.array([np.std(vals) for vals in values])
        epochs = np.arange(1, len(steps) + 1)
        ax.plot(epochs, mean, marker="o", color=colors[i % len(colors)], label=v)
        ax.fill_between(epochs, mean - std, mean + std, color=colors[i % len(colors)], alpha=0.2)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(f"{curve_metric} per epoch (mean ± std over seeds)")
    ax.legend()
    for ax, attr, label in ((axes[1][0], "parameters", "parameters"),
                            (axes[1][1], "train_seconds", "training time (s, all epochs)")):
        for i, v in enumerate(names):
            pts = [(getattr(run, attr), run.score) for run in group.runs[v].values() if getattr(run, attr)]
            if pts:
                ax.scatter(*zip(*pts), color=colors[i % len(colors)], label=v)
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {label}")
        ax.legend()
    fig.suptitle(title)
    save_figure(fig, path, dpi=90)


def write_comparison(tracking_uri: str, experiment_name: str, factor: str, out_md: Path,
                     metric: str | None = None, where: dict[str, str] | None = None,
                     only_parent: str | None = None, alpha: float = 0.05, command: str | None = None,
                     breakdown_metrics: list[str] | None = None, covarying: tuple[str, ...] = ()) -> dict:
    """Build the report (markdown + one figure per group). `only_parent`: keep only the groups that hold a
    run of that sweep; `breakdown_metrics`: further metrics of the same runs, tabled per group.
    Returns {"groups": [analysis, ...], "metric": ...}."""
    from rnnlab.io import write_text
    from rnnlab.reporting.report import markdown_table

    runs, metric, curve_metric = load_runs(tracking_uri, experiment_name, factor, metric, where=where)
    groups = [g for g in group_runs(runs, factor, tuple(covarying)) if len(g.runs) >= 2]
    if only_parent:
        groups = [g for g in groups if any(r.parent == only_parent for s in g.runs.values() for r in s.values())]
    if not groups:
        seen = sorted({r.variant for r in runs})
        raise ConfigError(f"{experiment_name!r}: no two values of {factor} ({', '.join(seen)}) were run with "
                          "otherwise identical settings; run a sweep over it, e.g. "
                          f"`python pipelines/train.py -m {factor}=... seed=1,2,3`")
    out_md = Path(out_md)
    scale = 100.0 if metric.endswith(("acc", "f1")) else 1.0  # accuracy in points, BLEU already is
    unit = "points" if scale == 100.0 else "BLEU/chrF points"
    lines = [f"# Is the difference real? `{factor}` on {experiment_name}", "",
             "Generated from MLflow runs alone by `rnnlab.reporting.compare`"
             + (f" (`{command}`)" if command else "") + "; do not edit.", "",
             f"Score: `{metric}` (x{scale:g}, {unit}). Runs compared: same configuration except `{factor}`"
             + "".join(f", `{c}.*`" for c in covarying) + " and "
             "the seed; differences are paired by seed; 95% t-intervals; two-sided paired t-test; p-values "
             "Holm-adjusted over the pairs of a group. A difference is called real only when the adjusted p < "
             f"{alpha}.", ""]
    analyses = []
    for gi, group in enumerate(groups, start=1):
        analysis = analyse(group, alpha)
        analyses.append(analysis)
        png = out_md.with_name(f"{out_md.stem}{'' if gi == 1 else f'-{gi}'}.png")
        keys = set(group.settings) | set(groups[0].settings)  # a key one group never logged differs too
        differing = {k: group.settings.get(k, "(not logged)") for k in keys
                     if gi > 1 and groups[0].settings.get(k) != group.settings.get(k)}
        heading = "Main group" if gi == 1 else "Group " + str(gi) + ": " + ", ".join(
            f"{k}={v}" for k, v in sorted(differing.items())[:6])
        lines += [f"## {heading}", ""]
        lines += markdown_table(
            ["variant", "seeds", f"mean {metric}", "std", "min", "max", "parameters", "train s (mean)", "launched by"],
            [[r["variant"], str(r["n"]), _fmt(r["mean"] * scale, 2), _fmt(r["std"] * scale, 2),
              _fmt(r["min"] * scale, 2), _fmt(r["max"] * scale, 2),
              f"{int(r['parameters']):,}" if r["parameters"] else "n/a",
              _fmt(r["train_seconds"], 1) if r["train_seconds"] else "n/a", ", ".join(r["launchers"])]
             for r in analysis["variants"]])
        lines += [""]
        lines += markdown_table(
            ["comparison", "paired seeds", "mean difference", "95% interval", "p (paired t)", "p (Holm)", "verdict"],
            [[f"{p['b']} - {p['a']}", str(p["n"]), _fmt(p["mean"] * scale, 2),
              f"[{_fmt(p['ci'][0] * scale, 2)}, {_fmt(p['ci'][1] * scale, 2)}]", _fmt(p["p"], 4),
              _fmt(p["p_holm"], 4), p["verdict"]] for p in analysis["pairs"]], numeric=False)
        lines += [""]
        for p in analysis["pairs"]:
            if p["n"] >= 2:
                how = (f"{p['b']} and {p['a']} score the same" if p["mean"] == 0 else
                       f"{p['b']} scores {_fmt(abs(p['mean']) * scale, 2)} points "
                       f"{'higher' if p['mean'] > 0 else 'lower'} than {p['a']}")
                lines.append(f"- {how} on average over {p['n']} paired seeds; 95% interval "
                             f"[{_fmt(p['ci'][0] * scale, 2)}, {_fmt(p['ci'][1] * scale, 2)}]: **{p['verdict']}**.")
        analysis["breakdown"] = breakdown(group, list(breakdown_metrics or []), alpha)
        lines += breakdown_lines(analysis["breakdown"], scale)
        if group.reruns:
            spread = max(max(v) - min(v) for v in group.reruns.values())
            lines += ["", f"{len(group.reruns)} (variant, seed) pair(s) were run more than once (e.g. by DVC and by "
                      f"a Hydra sweep); the newest run is used; their scores differ by at most "
                      f"{spread * scale:.4f} points."]
        plot_group(group, analysis, factor, metric, curve_metric,
                   f"{experiment_name}: {factor} ({heading.lower()})", png)
        lines += ["", f"![{factor}]({png.name})", ""]
    fewest = min(p["n"] for a in analyses for p in a["pairs"])
    lines += [f"With {fewest} paired seed(s) the interval is wide: a difference smaller than its half-width cannot be "
              "told from seed noise. More seeds narrow it (add e.g. `seed=42,43,44,45,46` to the sweep's command line).", ""]
    write_text(out_md, "\n".join(lines))
    return {"groups": analyses, "metric": metric, "report": str(out_md)}


def comparison_preset(name: str, dataset: str | None = None) -> dict:
    """A named comparison of conf/experiment/: its factor and metric, and the MLflow experiment its runs are
    in (composed from conf/, on the family's default data set or `dataset`)."""
    from rnnlab.config import CONF_DIR, compose, family_view

    path = Path(CONF_DIR) / "experiment" / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
        raise ConfigError(f"--comparison {name!r}: no {path}; known comparisons: {', '.join(names)}")
    view = family_view(compose([f"experiment={name}"]))
    if dataset:
        # only the name matters here (it names the MLflow experiment), so any data set is accepted,
        # including a local one with no conf/data/ file
        view = family_view(compose([f"experiment={name}", f"{view.family}.data.name={dataset}"]))
    comparison = view.comparison
    return {"factor": comparison.factor, "metric": comparison.get("metric"), "dataset": str(view.data.name),
            "breakdown": list(comparison.get("breakdown") or []),
            "covarying": tuple(comparison.get("covarying") or ()),
            "experiment": view.tracking.experiment_name, "family": view.family}
