"""Data stages: tokenisation throughput, wall time of each data stage, and `dvc repro` with nothing to do.

    .venv/bin/python benchmarks/bench_data.py

- Tokenisation: the pipeline's own trained tokenizers (data/tokenized/*/tokenizer*.json) over the
  raw stage's texts, with `rnnlab.data.tokenizer.encode` (batch encoding, as the tokenize stage runs
  it) and, for contrast, one `Tokenizer.encode` call per text. Tokens/s of the output ids.
- Stage wall time: each data stage script run as DVC runs it (a fresh `python pipelines/...` process:
  start-up, imports, reading, writing), writing into a temporary folder instead of data/.
- `dvc status` and `dvc repro` in this repository: only when `dvc status` says everything is up to
  date (otherwise `dvc repro` would start real work), else recorded as skipped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

ROOT = common.ROOT
PY = sys.executable
BIN = Path(PY).parent


def tokenize_rates(min_tokens: int = 2_000_000) -> dict:
    from datasets import load_from_disk
    from tokenizers import Tokenizer

    from rnnlab.data.tokenizer import encode

    cases = {"rotten_tomatoes": ("data/raw/rotten_tomatoes/dataset", "text", "tokenizer.json"),
             "anki_spa_eng.source": ("data/raw/anki_spa_eng/dataset", "source", "source_tokenizer.json"),
             "anki_spa_eng.target": ("data/raw/anki_spa_eng/dataset", "target", "target_tokenizer.json")}
    out = {}
    for name, (raw, column, tok_file) in cases.items():
        dataset = load_from_disk(str(ROOT / raw))["train"]
        texts = list(dataset[column][:])
        tokenizer = Tokenizer.from_file(str(ROOT / "data/tokenized" / name.split(".")[0] / tok_file))
        once = encode(tokenizer, texts, 10_000)
        per_pass = sum(len(ids) for ids in once)
        passes = max(1, -(-min_tokens // per_pass))
        corpus = texts * passes
        start = time.perf_counter()
        ids = encode(tokenizer, corpus, 10_000)
        batch_seconds = time.perf_counter() - start
        tokens = sum(len(x) for x in ids)
        sample = texts[:20_000]
        start = time.perf_counter()
        single_tokens = sum(len(tokenizer.encode(t, add_special_tokens=False).ids) for t in sample)
        single_seconds = time.perf_counter() - start
        out[name] = {"texts": len(corpus), "tokens": tokens,
                     "batch_tokens_per_second": round(tokens / batch_seconds),
                     "one_at_a_time_tokens_per_second": round(single_tokens / single_seconds)}
        print(name, out[name], flush=True)
    return out


def stage_times(repeats: int) -> dict:
    """Wall seconds of each data stage script, into a temporary copy of the data folders."""
    stages = [(script, [f"family={family}"]) for family in ("classify", "seq2seq")
              for script in ("download", "tokenize_text", "embed")]
    out = {}
    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-data-") as tmp:
        paths = [f"paths.raw={tmp}/raw", f"paths.tokenized={tmp}/tokenized", f"paths.embeddings={tmp}/embeddings"]
        for script, extra in stages:
            name = script.replace("tokenize_text", "tokenize") + f" ({extra[0].split('=')[1]})"
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                proc = subprocess.run([PY, f"pipelines/{script}.py", "--params", "params.yaml", *extra, *paths],
                                      cwd=ROOT, capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise RuntimeError(f"{script} {extra} failed:\n{proc.stderr[-2000:]}")
            out[name] = round(min(times), 2)
            print(name, times, flush=True)
    start = time.perf_counter()
    subprocess.run([PY, "-c", "import rnnlab.data.prepare, datasets, tokenizers, numpy"], cwd=ROOT, check=True)
    out["python start + data imports"] = round(time.perf_counter() - start, 2)
    return out


def dvc_noop(repeats: int) -> dict:
    env_path = f"{BIN}:{__import__('os').environ['PATH']}"
    env = {**__import__("os").environ, "PATH": env_path}

    def timed(*args) -> tuple[float, str]:
        start = time.perf_counter()
        proc = subprocess.run(["dvc", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        return time.perf_counter() - start, proc.stdout + proc.stderr

    seconds, text = timed("status")
    if "up to date" not in text:
        return {"skipped": "dvc status reports changes; run `make repro` first (dvc repro would do real work)"}
    status = [seconds] + [timed("status")[0] for _ in range(repeats - 1)]
    repro = [timed("repro")[0] for _ in range(repeats)]
    return {"dvc_status_seconds": round(min(status), 2), "dvc_repro_noop_seconds": round(min(repro), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--label", default="current")
    a = ap.parse_args()
    figures = {"tokenize": tokenize_rates(), "stage_wall_seconds": stage_times(a.repeats),
               "dvc": dvc_noop(a.repeats)}
    common.record("data_stages", a.label, figures,
                  f"python benchmarks/bench_data.py --repeats {a.repeats} --label {a.label!r}")
    print(figures)


if __name__ == "__main__":
    main()
