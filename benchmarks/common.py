"""Shared by the benchmark scripts: machine facts, a measured matmul peak, subprocess workers with their
own peak RSS, and the results file (benchmarks/results.json, rendered to benchmarks/RESULTS.md).

Every figure in results.json was measured by a script in this folder; each record carries the date,
the git commit, the machine and the command that produced it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
RENDERED = ROOT / "benchmarks" / "RESULTS.md"


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "onednn": bool(torch.backends.mkldnn.is_available()), "platform": platform.platform()}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    return info


def commit() -> str:
    if os.environ.get("RNNLAB_COMMIT"):  # a copy of the tree without .git (a rented GPU machine) names its commit
        return os.environ["RNNLAB_COMMIT"]
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def matmul_flops(size: int = 1024, seconds: float = 2.0, device: str = "cpu", dtype=None, rounds: int = 5) -> float:
    """Measured FLOP/s of a square fp32 (or `dtype`) matmul with torch's current thread count: the best of
    `rounds` timed loops of `seconds / rounds` each (other load on the machine only lowers a round)."""
    return max(_matmul_round(size, seconds / rounds, device, dtype) for _ in range(rounds))


def _matmul_round(size: int, seconds: float, device: str, dtype) -> float:
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    sync()
    return 2 * size**3 * runs / (time.perf_counter() - start)


def optimizer_step(loss, optimizer, scheduler, params, clip: float) -> None:
    """One step of a bare training loop as Lightning takes it: gradients, clipping by norm, optimizer,
    then the per-step learning-rate schedule."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_worker(script: Path, args: list[str], env: dict | None = None, timeout: int = 3600) -> dict:
    """Run `python script args` in a fresh process (its own peak RSS, nothing cached from another
    measurement) and return the JSON object it prints on its last stdout line."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def emit(obj: dict) -> None:
    """A worker's result: one JSON line, last on stdout."""
    print(json.dumps(obj), flush=True)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server the benchmark starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed_calls(fn, inputs) -> list[float]:
    """The seconds each `fn(x)` took, for x in `inputs`, one call at a time (a latency sample)."""
    out = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - start)
    return out


def latency_ms(seconds: list[float], digits: int = 2) -> dict:
    """A latency sample's size, median, 95th percentile and maximum, in milliseconds."""
    import numpy as np

    ms = np.array(seconds) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), digits),
            "p95_ms": round(float(np.percentile(ms, 95)), digits), "max_ms": round(float(ms.max()), digits)}


def median(values: list[float]) -> float:
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def record(name: str, label: str, figures: dict, command: str) -> dict:
    """Append one measured record to results.json (kept: every earlier record, for before/after) and
    re-render RESULTS.md."""
    entry = {"benchmark": name, "label": label, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "commit": commit(), "command": command, "machine": machine(), "figures": figures}
    records = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    records.append(entry)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(records, indent=1) + "\n")
    tmp.replace(RESULTS)
    render(records)
    return entry


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _flat(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else key, inner, out)
    else:
        out[prefix] = value


def render(records: list[dict]) -> None:
    lines = ["# Benchmark results", "",
             "Generated from `benchmarks/results.json` by `benchmarks/common.py`; every record below was measured",
             "by the command it names (`make bench` runs them all). Newest first within each benchmark.", ""]
    for name in sorted({r["benchmark"] for r in records}):
        lines += [f"## {name}", ""]
        for r in reversed([r for r in records if r["benchmark"] == name]):
            m = r["machine"]
            where = m.get("gpu") or f"{m['cpu']}, {m['logical_cpus']} logical CPUs"
            lines += [f"### {r['label']} ({r['date'][:10]}, commit {r['commit']})", "",
                      f"Machine: {where}; torch {m['torch']} ({m['torch_threads']} threads), Python {m['python']}.",
                      f"Command: `{r['command']}`", "", "| figure | value |", "|---|---|"]
            flat: dict = {}
            _flat("", r["figures"], flat)
            lines += [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
            lines.append("")
    RENDERED.write_text("\n".join(lines))
