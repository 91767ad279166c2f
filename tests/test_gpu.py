"""The GPU path, checked where there is a CUDA GPU (skipped elsewhere, so CI without one skips it):
cuDNN's fused kernels are the ones that run, they agree with the CPU's, bf16 autocast stays close to
fp32, decoding gives the same words on both devices, and the real pipeline trains and evaluates on the
GPU in bf16 and under DDP. Run on a GPU machine with `python -m pytest tests/test_gpu.py`."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import ROOT, run_cmd
from rnnlab.tasks.classify.model import TextClassifier
from rnnlab.tasks.seq2seq.decoding import beam_search, greedy_decode
from rnnlab.tasks.seq2seq.model import Seq2Seq

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
BOS, EOS, VOCAB = 2, 3, 50


def _seq2seq(cell: str, attention: str) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(VOCAB, VOCAB, cell, src_embedding_dim=16, tgt_embedding_dim=16, hidden_size=32,
                   bidirectional=True, dropout=0.0, attention=attention).eval()


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(4, VOCAB, (n,), generator=g)
    return ids, torch.tensor(lengths)


def _translation_loss(model: Seq2Seq, device: str, autocast: bool = False) -> torch.Tensor:
    src, lengths = _batch([7, 5, 3, 6])
    tgt, _ = _batch([8, 8, 8, 8], seed=1)
    model = model.to(device)
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=autocast):
        return model.loss(src.to(device), lengths.to(device), tgt[:, :-1].to(device), tgt[:, 1:].to(device), 1.0, 0.0)


def _ops(call) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        call()
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attention", ["none", "additive", "general"])
def test_translation_model_runs_cudnn_and_matches_the_cpu(cell, attention):
    model = _seq2seq(cell, attention).train()  # cuDNN's RNN backward runs in training mode only (dropout is 0)
    cpu = _translation_loss(model, "cpu")
    cpu.backward()
    cpu_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    ops = _ops(lambda: _translation_loss(model, "cuda").backward())
    assert "aten::_cudnn_rnn" in ops, sorted(op for op in ops if "rnn" in op.lower() or "lstm" in op.lower())
    gpu = _translation_loss(model, "cuda")
    torch.testing.assert_close(gpu.cpu(), cpu.detach(), rtol=1e-4, atol=1e-5)
    for name, grad in cpu_grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad.cpu(), grad, rtol=1e-3, atol=1e-5,
                                   msg=name)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_bf16_autocast_loss_stays_close_to_fp32_on_the_gpu(cell):
    model = _seq2seq(cell, "additive")
    with torch.no_grad():
        full = _translation_loss(model, "cuda").item()
        half = _translation_loss(model, "cuda", autocast=True).item()
    assert abs(half - full) <= 0.02 * full, (half, full)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_greedy_and_beam_decoding_give_the_same_words_on_gpu_and_cpu(cell):
    torch.manual_seed(3)
    model = _seq2seq(cell, "additive")
    for p in model.parameters():  # sharper distributions than the initial ones: fewer near-ties
        p.data.mul_(3.0)
    src, lengths = _batch([9, 4, 6])
    out = {}
    for device in ("cpu", "cuda"):
        model.to(device)
        greedy = greedy_decode(model, src.to(device), lengths.to(device), BOS, EOS, max_length=12)
        beam = beam_search(model, src.to(device), lengths.to(device), BOS, EOS, beam=4, max_length=12)
        out[device] = (greedy.tokens, beam.tokens)
    assert out["cpu"] == out["cuda"]


def test_bidirectional_classifier_runs_cudnn_and_matches_the_cpu():
    torch.manual_seed(0)
    model = TextClassifier(VOCAB, 16, 3, cell="lstm", hidden_size=32, num_layers=2, bidirectional=True,
                           dropout=0.0).eval()
    ids, lengths = _batch([7, 5, 3, 6])
    with torch.no_grad():
        cpu = model(ids, lengths)
    model.cuda()
    ops = _ops(lambda: model(ids.cuda(), lengths.cuda()))
    assert "aten::_cudnn_rnn" in ops
    with torch.no_grad():
        torch.testing.assert_close(model(ids.cuda(), lengths.cuda()).cpu(), cpu, rtol=1e-4, atol=1e-5)


def _train(work, overrides: list[str], tag: str) -> dict:
    proc = run_cmd(["python", str(ROOT / "pipelines/train.py"), *overrides, f"hydra.run.dir=outputs/{tag}"],
                   work, timeout=500)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return json.loads((work / f"outputs/{tag}/model/train_summary.json").read_text())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_pipeline_trains_translation_on_the_gpu_in_bf16(tiny_project):
    work = tiny_project["dir"]
    summary = _train(work, [*tiny_project["overrides"], "family=seq2seq", "trainer@seq2seq.trainer=gpu",
                            "seq2seq.trainer.max_epochs=3", "seq2seq.trainer.patience=3"], "gpu")
    assert summary["machine"]["device"] == torch.cuda.get_device_name(0), summary["machine"]
    assert summary["machine"]["precision"] == "bf16-mixed"
    assert summary["epochs_run"] == 3
    losses = [row["train_loss"] for row in summary["history"]]
    assert all(loss == loss for loss in losses) and losses[-1] < losses[0], losses


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_with_nccl_trains_classification_on_one_gpu(tiny_project):
    work = tiny_project["dir"]
    summary = _train(work, [*tiny_project["overrides"], "trainer@classify.trainer=gpu",
                            "classify.trainer.strategy=ddp", "classify.trainer.devices=1",
                            "classify.trainer.max_epochs=3", "classify.trainer.patience=3"], "ddp")
    assert summary["epochs_run"] == 3 and summary["machine"]["device"] == torch.cuda.get_device_name(0)
