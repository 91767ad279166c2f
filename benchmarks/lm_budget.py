"""Perplexity per CPU minute of language-model settings: the project's model, windows and optimizer (the same
functions the lm_train stage uses, the learning-rate schedule over the same number of steps), trained in
a plain loop that measures validation perplexity on the first `--probe-tokens` of the validation stream
every `--probe-every` seconds of training, then on the whole validation stream at the end.

    .venv/bin/python benchmarks/lm_budget.py --epochs 1 --threads 2 lm.model.cell=gru lm.optim.batch_size=64
    .venv/bin/python benchmarks/lm_budget.py --sweep benchmarks/lm_sweep.txt --jobs 2 --threads 1

A sweep file holds one setting per line (space-separated overrides; `#` comments). Each result (the curve,
the final perplexity, tokens/s, the machine) is appended to benchmarks/lm_budget.jsonl. Needs the lm data
stages (`dvc repro lm_embed`). The probe's figures are for comparing settings; the stage's own numbers are
in metrics/lm/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

OUT = common.ROOT / "benchmarks" / "lm_budget.jsonl"


def run(overrides: list[str], epochs: float, threads: int, probe_every: float, probe_tokens: int) -> dict:
    import numpy as np
    import torch
    from omegaconf import OmegaConf

    from rnnlab.config import load_params
    from rnnlab.data.prepare import embeddings_dir, load_matrix, tokenized_dir
    from rnnlab.tasks.lm.data import load_streams
    from rnnlab.tasks.lm.evaluate import perplexity
    from rnnlab.tasks.lm.model import build_lm, detach_state
    from rnnlab.tasks.lm.module import Windows, stream_rows
    from rnnlab.training.optim import configure_optimizers

    torch.set_num_threads(threads)
    cfg = load_params(common.ROOT / "params.yaml", ["family=lm", *overrides])
    torch.manual_seed(int(cfg.seed))
    streams, tokenizer = load_streams(tokenized_dir(cfg))
    vocab = tokenizer.get_vocab_size()
    matrix = load_matrix(embeddings_dir(cfg), vocab) if cfg.model.embedding_mode != "random" else None
    model = build_lm(OmegaConf.to_container(cfg.model), vocab, matrix)
    windows = Windows(stream_rows(streams["train"], int(cfg.optim.batch_size)), int(cfg.stream.bptt),
                      bool(cfg.stream.variable), int(cfg.seed))
    per_epoch = len(windows)
    total = int(per_epoch * epochs)
    fake = types.SimpleNamespace(estimated_stepping_batches=total, precision="32-true")
    setup = configure_optimizers(model, "embedding.", OmegaConf.to_container(cfg.optim), fake)
    optimizer = setup["optimizer"] if isinstance(setup, dict) else setup
    scheduler = setup["lr_scheduler"]["scheduler"] if isinstance(setup, dict) else None
    params = [p for p in model.parameters() if p.requires_grad]
    probe = streams["validation"][:probe_tokens]
    eval_rows, eval_bptt = int(cfg.stream.eval_batch_size), int(cfg.stream.eval_bptt)

    def probe_ppl() -> float:
        model.eval()
        ppl = perplexity(model, probe, min(eval_rows, 8), eval_bptt)["ppl"]
        model.train()
        return ppl

    curve, state, trained, step, seconds = [], None, 0, 0, 0.0
    next_probe = probe_every
    model.train()
    while step < total:
        epoch, k = divmod(step, per_epoch)
        if k == 0:
            windows.set_epoch(epoch)
            state = None
        start = time.perf_counter()
        w = windows[k]
        features, state = model(w["ids"], state)
        state = detach_state(state)
        loss = model.token_nll(features, w["targets"]).mean()
        common.optimizer_step(loss, optimizer, scheduler, params, float(cfg.trainer.gradient_clip_val))
        seconds += time.perf_counter() - start
        trained += w["ids"].numel()
        step += 1
        if seconds >= next_probe:
            curve.append({"seconds": round(seconds, 1), "tokens": trained, "probe_ppl": probe_ppl()})
            next_probe += probe_every
    if not curve or curve[-1]["tokens"] != trained:
        curve.append({"seconds": round(seconds, 1), "tokens": trained, "probe_ppl": probe_ppl()})
    model.eval()
    final = perplexity(model, streams["validation"], eval_rows, eval_bptt)
    return {"overrides": overrides, "epochs": epochs, "threads": threads, "steps": total,
            "train_seconds": round(seconds, 1), "train_tokens_per_second": round(trained / max(seconds, 1e-9)),
            "val_ppl": final["ppl"], "parameters": sum(p.numel() for p in model.parameters()), "curve": curve,
            "probe_tokens": int(probe.size), "machine": common.machine(), "commit": common.commit(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def plot(path: Path, records: Path = OUT) -> None:
    """Probe perplexity against training minutes, one line per recorded run."""
    from rnnlab.reporting.figures import new_figure, save_figure

    fig, ax = new_figure(8, 4.5)
    for line in records.read_text(encoding="utf-8").splitlines():
        run = json.loads(line)
        label = " ".join(o.split("=", 1)[0].split(".")[-1] + "=" + o.split("=", 1)[1] for o in run["overrides"])
        label = label or "defaults"
        label += f" ({run['epochs']:g} ep, {run['threads']} thr): val {run['val_ppl']:.0f}"
        ax.plot([c["seconds"] / 60 for c in run["curve"]], [c["probe_ppl"] for c in run["curve"]], marker=".",
                label=label)
    ax.set_xlabel("training minutes (probes excluded)")
    ax.set_ylabel("perplexity on the validation probe")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title("WikiText-2: perplexity per CPU minute")
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=float, default=1.0, help="training epochs (fractions allowed)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probe-every", type=float, default=30.0, help="seconds of training between probes")
    ap.add_argument("--probe-tokens", type=int, default=30000)
    ap.add_argument("--sweep", type=Path, help="a file of settings, one per line")
    ap.add_argument("--jobs", type=int, default=1, help="settings trained at once (with --sweep)")
    ap.add_argument("--out", type=Path, default=OUT, help="the results file (JSON lines) appended to")
    ap.add_argument("--plot", type=Path, help="draw every recorded curve of lm_budget.jsonl into this PNG and stop")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    if a.plot:
        plot(a.plot, a.out)
        return
    settings = [a.overrides]
    if a.sweep:
        settings = [line.split("#")[0].split() for line in a.sweep.read_text().splitlines()]
        settings = [s for s in settings if s]

    def one(overrides):
        result = run(overrides, a.epochs, a.threads, a.probe_every, a.probe_tokens)
        result["concurrent_jobs"] = a.jobs
        with a.out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(result) + "\n")
        print(f"{' '.join(overrides) or '(defaults)'}: val ppl {result['val_ppl']:.1f} after "
              f"{result['train_seconds']:.0f} s, {result['train_tokens_per_second']:,} tok/s", flush=True)
        return result

    if a.jobs > 1:
        from joblib import Parallel, delayed

        Parallel(n_jobs=a.jobs)(delayed(one)(s) for s in settings)
    else:
        for s in settings:
            one(s)


if __name__ == "__main__":
    main()
