"""Training throughput: the project's Lightning training (rnnlab.training.train.train, exactly as the DVC
stage runs it: MLflow logging, checkpoint folder, callbacks, DataLoader) against a bare PyTorch loop
written here over the identical model, optimizer, schedule, gradient clipping, data and batches.

    .venv/bin/python benchmarks/bench_train.py --family classify            # or --family seq2seq
    .venv/bin/python benchmarks/bench_train.py --family seq2seq --precision bf16-mixed
    python benchmarks/bench_train.py --family seq2seq --accelerator gpu --precision bf16-mixed   # on a GPU

Each implementation runs in its own process (own peak RSS), alternated `--repeats` times. Throughput is
tokens per second of the training batches (source tokens + decoder steps, padding excluded, counted
the same way as the project's History callback): the best epoch after the first (warm-up) over all
repeats (other load only slows epochs down), and the median epoch.
The bare loop gets its batches collated (and, on a GPU, copied to it) before the clock starts, so the
ratio charges Lightning with every data-loading, host-to-device and logging cost. It also reports
achieved FLOP/s of the training step (RNN FLOPs counted analytically, all other ops by torch's
FlopCounterMode, padding included since it is computed) as a share of this machine's measured matmul
FLOP/s (fp32 on a CPU; on a GPU in the precision benchmarked).

Needs the pipeline's data stages (`dvc repro classify_embed seq2seq_embed`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DEFAULTS = {"classify": {"epochs": 3, "batches": 0}, "seq2seq": {"epochs": 3, "batches": 120}}


def config(task: str, epochs: int, batches: int, precision: str, extra: list[str], accelerator: str = "cpu"):
    from rnnlab.config import load_params

    prefix = f"{task}."
    items = [f"family={task}", f"{prefix}trainer.max_epochs={epochs}", f"{prefix}trainer.min_epochs={epochs}",
             f"{prefix}trainer.patience={epochs + 1}", f"{prefix}trainer.precision={precision}",
             f"{prefix}trainer.progress_bar=false"]
    if batches:
        items.append(f"{prefix}trainer.limit_train_batches={batches}")
    if accelerator == "gpu":  # conf/trainer/gpu.yaml's device settings, precision as asked
        items += [f"{prefix}trainer.accelerator=gpu", f"{prefix}trainer.devices=1", f"{prefix}trainer.deterministic=false"]
    return load_params(common.ROOT / "params.yaml", items + list(extra))


def _rnn_flops(counter: list):
    """Forward hook adding a recurrent module's forward matmul FLOPs x3 (forward + backward)."""
    def hook(module, inputs, output):
        x = inputs[0]
        batch, steps = (x.size(0), x.size(1)) if module.batch_first else (x.size(1), x.size(0))
        gates = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}[module.mode]
        dirs = 2 if module.bidirectional else 1
        hidden = module.hidden_size
        total = 0
        for layer in range(module.num_layers):
            width = module.input_size if layer == 0 else hidden * dirs
            total += dirs * 2 * gates * hidden * (width + hidden) * batch * steps
        counter[0] += 3 * total
    return hook


def bare(cfg, task: str, epochs: int, batches: int, precision: str) -> dict:
    import torch

    from rnnlab.data.batching import BucketBatchSampler
    from rnnlab.data.prepare import embeddings_dir, load_matrix, tokenized_dir
    from rnnlab.training.optim import configure_optimizers

    if cfg.trainer.num_threads:
        torch.set_num_threads(int(cfg.trainer.num_threads))
    torch.manual_seed(int(cfg.seed))
    torch.use_deterministic_algorithms(bool(cfg.trainer.deterministic))  # as the Trainer sets it
    matrix = load_matrix(embeddings_dir(cfg))
    seed, size = int(cfg.seed), int(cfg.optim.batch_size)
    if task == "seq2seq":
        from rnnlab.tasks.seq2seq.data import load_tokenized_pairs
        from rnnlab.tasks.seq2seq.model import build_seq2seq
        from rnnlab.tasks.seq2seq.module import collate as collate_pairs

        data, tokenizers = load_tokenized_pairs(tokenized_dir(cfg))
        src, tgt = list(data["train"]["source_ids"]), list(data["train"]["target_ids"])
        keys = [len(s) + len(t) / 1000.0 for s, t in zip(src, tgt)]
        model = build_seq2seq(dict(cfg.model), tokenizers["source"].get_vocab_size(),
                              tokenizers["target"].get_vocab_size(), matrix)
        smoothing = float(cfg.model.label_smoothing)
        make = lambda b: collate_pairs([(i, src[i], tgt[i]) for i in b])  # noqa: E731
        # the model's own loss: full softmax cross-entropy, or the adaptive softmax's (output_layer option)
        forward = lambda b: model.loss(b["ids"], b["lengths"], b["tgt_in"], b["tgt_out"], 1.0, smoothing)  # noqa: E731
        prefix = "src_embedding."
    else:
        from rnnlab.tasks.classify.data import load_tokenized
        from rnnlab.tasks.classify.model import build_classifier
        from rnnlab.tasks.classify.module import collate

        data, _ = load_tokenized(tokenized_dir(cfg))
        ids, labels = list(data["train"]["input_ids"]), list(data["train"]["label"])
        keys = [len(s) for s in ids]
        model = build_classifier(dict(cfg.model), matrix.shape[0], matrix.shape[1],
                                 len(data["train"].features["label"].names), matrix)
        loss_fn = torch.nn.CrossEntropyLoss()
        make = lambda b: collate([(i, ids[i], labels[i]) for i in b])  # noqa: E731
        forward = lambda b: loss_fn(model(b["ids"], b["lengths"]), b["labels"])  # noqa: E731
        prefix = "embedding."
    sampler = BucketBatchSampler(keys, size, shuffle=True, seed=seed)
    per_epoch = min(len(sampler), batches) if batches else len(sampler)
    fake_trainer = types.SimpleNamespace(estimated_stepping_batches=per_epoch * epochs, precision=precision)
    setup = configure_optimizers(model, prefix, dict(cfg.optim), fake_trainer)
    optimizer = setup["optimizer"] if isinstance(setup, dict) else setup
    scheduler = setup["lr_scheduler"]["scheduler"] if isinstance(setup, dict) else None
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = precision.startswith("bf16")
    device = torch.device("cuda" if str(cfg.trainer.accelerator) == "gpu" else "cpu")
    model.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(batch) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = forward(batch)
        common.optimizer_step(loss, optimizer, scheduler, params, float(cfg.trainer.gradient_clip_val))
        return loss

    rates, seconds, epoch_batches = [], [], []
    model.train()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        epoch_batches = [make(b) for _, b in zip(range(per_epoch), sampler)]
        tokens = sum(int(b["lengths"].sum()) + (int(b["tgt_lengths"].sum()) if "tgt_lengths" in b else 0)
                     for b in epoch_batches)
        epoch_batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()} for b in epoch_batches]
        sync()
        start = time.perf_counter()
        for batch in epoch_batches:
            step(batch)
        sync()
        seconds.append(time.perf_counter() - start)
        rates.append(tokens / seconds[-1])

    # FLOPs of the last epoch's batches (forward + backward), counted in a separate pass.
    from torch.utils.flop_counter import FlopCounterMode

    rnn = [0]
    hooks = [m.register_forward_hook(_rnn_flops(rnn)) for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
    padded = real = 0
    with FlopCounterMode(display=False) as counter:
        for batch in epoch_batches:
            forward(batch).backward()
            padded += batch["ids"].numel() + (batch["tgt_in"].numel() if "tgt_in" in batch else 0)
            real += int(batch["lengths"].sum()) + (int(batch["tgt_lengths"].sum()) if "tgt_lengths" in batch else 0)
    for h in hooks:
        h.remove()
    flops = rnn[0] + counter.get_total_flops()
    return {"tokens_per_second": rates, "epoch_seconds": seconds, "batches_per_epoch": per_epoch,
            "step_flops_per_epoch": flops, "rnn_flop_share": rnn[0] / max(flops, 1),
            "achieved_flops": flops / seconds[-1], "padding_share": 1 - real / padded,
            "peak_rss_mib": common.peak_rss_mib()}


def lightning(cfg, task: str, epochs: int) -> dict:
    from omegaconf import OmegaConf

    from rnnlab.training.train import train

    with tempfile.TemporaryDirectory(prefix="rnnlab-bench-") as tmp:
        tmp = Path(tmp)
        OmegaConf.update(cfg, "tracking.tracking_uri", f"sqlite:///{tmp / 'mlruns.db'}")
        OmegaConf.update(cfg, "tracking.artifact_location", str(tmp / "artifacts"))
        summary = train(cfg, tmp / "model", [], checkpoint_dir=tmp / "checkpoints")
    rows = summary["history"]
    return {"tokens_per_second": [r["train_tokens_per_second"] for r in rows],
            "epoch_seconds_with_validation": [r["epoch_seconds"] for r in rows],
            "fit_seconds": summary["fit_seconds"], "peak_rss_mib": common.peak_rss_mib()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", dest="task", choices=["classify", "seq2seq"], default="classify")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batches", type=int, help="training batches per epoch (0: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    ap.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    ap.add_argument("--label", default="current")
    ap.add_argument("--worker", choices=["bare", "lightning"], help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides of params.yaml")
    a = ap.parse_args()
    epochs = a.epochs or DEFAULTS[a.task]["epochs"]
    batches = DEFAULTS[a.task]["batches"] if a.batches is None else a.batches
    if a.worker:
        cfg = config(a.task, epochs, batches, a.precision, a.overrides, a.accelerator)
        result = bare(cfg, a.task, epochs, batches, a.precision) if a.worker == "bare" else lightning(cfg, a.task, epochs)
        common.emit(result)
        return

    import torch

    args = ["--family", a.task, "--epochs", str(epochs), "--batches", str(batches), "--precision", a.precision,
            "--accelerator", a.accelerator, *a.overrides]
    runs: dict[str, list[dict]] = {"bare": [], "lightning": []}
    for repeat in range(a.repeats):
        for impl in ("bare", "lightning"):
            runs[impl].append(common.run_worker(Path(__file__), [*args, "--worker", impl]))
            print(f"repeat {repeat + 1}/{a.repeats} {impl}: "
                  f"{[round(r) for r in runs[impl][-1]['tokens_per_second']]} tok/s", flush=True)
    # Epochs after the first (warm-up) of every repeat. Other load on the machine only slows an epoch down,
    # so the best epoch is the steadier estimate of each implementation's speed; the median is kept too.
    epochs_after_first = {impl: [r for run in rs for r in run["tokens_per_second"][1:]] for impl, rs in runs.items()}
    rate = {impl: max(values) for impl, values in epochs_after_first.items()}
    median_rate = {impl: common.median(values) for impl, values in epochs_after_first.items()}
    gpu = a.accelerator == "gpu"
    peak = (common.matmul_flops(size=8192, device="cuda", dtype=torch.bfloat16 if a.precision != "32-true" else None)
            if gpu else common.matmul_flops())
    achieved = max(run["achieved_flops"] for run in runs["bare"])  # best of the repeats, as the peak
    figures = {
        "family": a.task, "precision": a.precision, "epochs": epochs,
        "batches_per_epoch": runs["bare"][0]["batches_per_epoch"],
        "bare_tokens_per_second": round(rate["bare"]),
        "lightning_tokens_per_second": round(rate["lightning"]),
        "ratio_lightning_to_bare": round(rate["lightning"] / rate["bare"], 3),
        "median_epoch": {"bare_tokens_per_second": round(median_rate["bare"]),
                         "lightning_tokens_per_second": round(median_rate["lightning"]),
                         "ratio_lightning_to_bare": round(median_rate["lightning"] / median_rate["bare"], 3)},
        "peak_rss_mib": {impl: max(run["peak_rss_mib"] for run in rs) for impl, rs in runs.items()},
        "lightning_fit_seconds": [run["fit_seconds"] for run in runs["lightning"]],
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "training_step_gflops": round(achieved / 1e9, 2),
        "share_of_matmul_peak": round(achieved / peak, 3),
        "rnn_share_of_step_flops": round(runs["bare"][0]["rnn_flop_share"], 3),
        "padded_token_share": round(runs["bare"][0]["padding_share"], 3),
        "torch_threads": torch.get_num_threads(),
    }
    if gpu:
        figures.update({"accelerator": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                        "cudnn": torch.backends.cudnn.version(), "torch": torch.__version__})
    command = "python benchmarks/bench_train.py " + " ".join(
        ["--family", a.task, "--accelerator", a.accelerator, "--precision", a.precision, "--repeats", str(a.repeats),
         "--label", a.label, *a.overrides])
    name = f"train_throughput_{a.task}" + ("_gpu" if gpu else "") + ("_bf16" if a.precision != "32-true" else "")
    common.record(name, a.label, figures, command)
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
