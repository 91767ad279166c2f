"""Padding: how much of each batch is padding with and without length bucketing, and what a bidirectional
LSTM encoder costs with the project's scheme (right padding, no packing, backward direction reversed
within each length: rnnlab.models.encoders.RecurrentEncoder) against PyTorch's packed sequences.

    .venv/bin/python benchmarks/bench_padding.py [--device cuda]

Real training splits from the pipeline's tokenize stage; batches from the project's BucketBatchSampler
(bucketed) or cut from a random permutation (not bucketed). Encoder forward + backward over one epoch of
batches (embedding 50 -> BiLSTM 128, the classifier's shape), tokens/s of real tokens.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def batches(lengths, size: int, bucketed: bool, seed: int = 0) -> list:
    import numpy as np

    from rnnlab.data.batching import BucketBatchSampler

    if bucketed:
        return [list(b) for b in BucketBatchSampler(lengths, size, shuffle=True, seed=seed)]
    order = np.random.default_rng(seed).permutation(len(lengths))
    return [order[i:i + size].tolist() for i in range(0, len(order), size)]


def padded_share(lengths, groups) -> float:
    real = sum(lengths[i] for g in groups for i in g)
    padded = sum(len(g) * max(lengths[i] for i in g) for g in groups)
    return 1 - real / padded


def encoder_rate(ids, groups, mode: str, device: str, repeats: int) -> float:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from rnnlab.data.batching import pad as _pad
    from rnnlab.models.encoders import RecurrentEncoder

    torch.manual_seed(0)
    embed = torch.nn.Embedding(max(max(s) for s in ids) + 1, 50).to(device)
    if mode == "project":
        encoder = RecurrentEncoder("lstm", 50, 128, bidirectional=True).to(device)
    else:
        encoder = torch.nn.LSTM(50, 128, batch_first=True, bidirectional=True).to(device)
    prepared = []
    for g in groups:
        seqs = [ids[i] for i in g]
        prepared.append((_pad(seqs).to(device), torch.tensor([len(s) for s in seqs])))
    tokens = sum(int(lengths.sum()) for _, lengths in prepared)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    best = 0.0
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for x, lengths in prepared:
            emb = embed(x)
            if mode == "project":
                out = encoder(emb, lengths.to(device))
            else:
                packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
                out, _ = pad_packed_sequence(encoder(packed)[0], batch_first=True)
            out.sum().backward()
        sync()
        best = max(best, tokens / (time.perf_counter() - start))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--label", default="current")
    a = ap.parse_args()

    from rnnlab.tasks.classify.data import load_tokenized
    from rnnlab.tasks.seq2seq.data import load_tokenized_pairs

    classify, _ = load_tokenized(common.ROOT / "data/tokenized/rotten_tomatoes")
    pairs, _ = load_tokenized_pairs(common.ROOT / "data/tokenized/anki_spa_eng")
    splits = {"rotten_tomatoes (batch 64)": (classify["train"]["input_ids"][:], 64),
              "anki_spa_eng source (batch 128)": (pairs["train"]["source_ids"][:], 128)}
    figures: dict = {"device": a.device, "padded_token_share": {}, "encoder_real_tokens_per_second": {}}
    for name, (ids, size) in splits.items():
        lengths = [len(s) for s in ids]
        figures["padded_token_share"][name] = {
            "bucketed": round(padded_share(lengths, batches(lengths, size, True)), 4),
            "random batches": round(padded_share(lengths, batches(lengths, size, False)), 4)}
        print(name, figures["padded_token_share"][name], flush=True)
    ids, size = splits["rotten_tomatoes (batch 64)"]
    lengths = [len(s) for s in ids]
    for bucketed in (True, False):
        groups = batches(lengths, size, bucketed)
        for mode in ("project", "packed"):
            key = f"{'bucketed' if bucketed else 'random batches'}, {'padded+masked (project)' if mode == 'project' else 'packed'}"
            figures["encoder_real_tokens_per_second"][key] = round(encoder_rate(ids, groups, mode, a.device, a.repeats))
            print(key, figures["encoder_real_tokens_per_second"][key], flush=True)
    common.record("padding", a.label, figures,
                  f"python benchmarks/bench_padding.py --device {a.device} --repeats {a.repeats} --label {a.label!r}")


if __name__ == "__main__":
    main()
