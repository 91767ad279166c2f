"""The language-model family: vocabulary and streams, truncated back-propagation through time, the model's
output layers, perplexity, next words and generation, and the pipeline on a tiny generated corpus."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, run_cmd, write_grammar_corpus
from rnnlab.errors import DataError
from rnnlab.tasks.lm.data import EOS_ID, UNK_ID, build_vocabulary, encode_lines, make_tokenizer
from rnnlab.tasks.lm.evaluate import LanguageModel, _filter, generate, next_words, perplexity
from rnnlab.tasks.lm.model import WordLM, detach_state
from rnnlab.tasks.lm.module import LMModule, Windows, stream_rows, window_lengths

MODEL_CFG = {"cell": "lstm", "embedding_mode": "random", "embedding_dim": 8, "hidden_size": 16, "num_layers": 2,
             "dropout": 0.0, "embedding_dropout": 0.0, "locked_dropout": False, "tie_weights": False,
             "output_layer": "full", "adaptive_cutoffs": None}
OPTIM_CFG = {"lr": 0.01, "embedding_lr": 0.01, "weight_decay": 0.0, "batch_size": 4, "scheduler": "none"}


def test_vocabulary_is_unk_eos_then_words_seen_often_enough():
    lines = ["the cat sat", "the cat ran", "<unk> the dog", ""]
    vocab = build_vocabulary(lines, min_frequency=2, max_vocab_size=100)
    assert vocab == {"<unk>": UNK_ID, "<eos>": EOS_ID, "the": 2, "cat": 3}
    ids = encode_lines(make_tokenizer(vocab), lines)
    # one <eos> after every line, a blank line a lone <eos>; the corpus's own "<unk>" is the unknown word
    assert ids.tolist() == [2, 3, 0, 1, 2, 3, 0, 1, 0, 2, 0, 1, 1]
    assert len(build_vocabulary(lines, 1, 4)) == 4  # max_vocab_size counts the two special entries


@pytest.mark.parametrize("variable", [False, True])
def test_windows_cover_each_stream_position_exactly_once_per_epoch(variable):
    ids = np.arange(1003)
    grid = stream_rows(ids, 4)
    assert grid.shape == (4, 250) and grid[1, 0] == 250  # contiguous rows, the ragged tail dropped
    windows = Windows(grid, bptt=7, variable=variable, seed=3)
    for epoch in range(3):
        windows.set_epoch(epoch)
        inputs = torch.cat([windows[k]["ids"] for k in range(len(windows))], 1)
        targets = torch.cat([windows[k]["targets"] for k in range(len(windows))], 1)
        assert torch.equal(inputs, grid[:, :-1]) and torch.equal(targets, grid[:, 1:])
        assert len(windows) == 249 // 7 + (not variable and 249 % 7 > 0)
    if variable:
        lengths = window_lengths(249, 7, True, 0)
        assert sum(lengths) == 249 and len(set(lengths)) > 1 and window_lengths(249, 7, True, 0) == lengths


def test_too_short_streams_and_too_few_rows_are_clear_errors():
    with pytest.raises(DataError, match="too few for 8 rows.*lm.stream.eval_batch_size"):
        stream_rows(np.arange(10), 8, what="the test stream", key="lm.stream.eval_batch_size")
    with pytest.raises(DataError, match="cannot be shared by 4 processes"):
        stream_rows(np.arange(100), 2, 0, 4)


def test_top_k_and_top_p_keep_the_most_likely_words():
    log_probs = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    assert torch.isinf(_filter(log_probs, 2, 1.0)[2:]).all() and torch.isfinite(_filter(log_probs, 2, 1.0)[:2]).all()
    kept = torch.isfinite(_filter(log_probs, 0, 0.7))  # 0.5 < 0.7: the second word completes the mass
    assert kept.tolist() == [True, True, False, False]
    assert torch.isfinite(_filter(log_probs, 0, 0.4)).tolist() == [True, False, False, False]
    assert torch.isfinite(_filter(log_probs, 0, 1.0)).all()


def test_ddp_ranks_take_disjoint_rows():
    grid = stream_rows(np.arange(400), 8)
    parts = [stream_rows(np.arange(400), 8, rank, 2) for rank in range(2)]
    assert sorted(torch.cat(parts).flatten().tolist()) == sorted(grid.flatten().tolist())


def _module() -> LMModule:
    torch.manual_seed(0)
    module = LMModule(MODEL_CFG, OPTIM_CFG, vocab_size=30)
    module.log = lambda *a, **k: None  # outside a Trainer
    module.trainer = types.SimpleNamespace(num_training_batches=10)
    return module


def test_state_is_carried_detached_and_keeps_its_shape_across_windows():
    module = _module()
    grid = stream_rows(np.random.default_rng(0).integers(2, 30, 400), 4)
    windows = Windows(grid, bptt=5)
    module._carry("train", windows[0], 0)
    first = module.state["train"]
    assert [tuple(t.shape) for t in first[0]] == [(1, 4, 16), (1, 4, 16)] and len(first) == 2
    assert all(t.grad_fn is None and not t.requires_grad for layer in first for t in layer)
    # the next window starts from that state, and no gradient flows back into the first window
    embedding = module.model.embedding.weight
    only_first = set(windows[0]["ids"].flatten().tolist()) - set(windows[1]["ids"].flatten().tolist())
    module.zero_grad()
    loss = module._carry("train", windows[1], 1)
    loss.backward()
    assert only_first, "the test needs a word that only the first window holds"
    assert all(float(embedding.grad[w].abs().sum()) == 0.0 for w in only_first)
    assert [tuple(t.shape) for t in module.state["train"][1]] == [(1, 4, 16), (1, 4, 16)]
    # a window carried from a state differs from the same window from zero: the state is used
    with torch.no_grad():
        fresh, _ = module.model(windows[1]["ids"])
        carried, _ = module.model(windows[1]["ids"], first)
    assert not torch.allclose(fresh, carried)
    # a new epoch (batch 0) starts again from a zero state: the first window gives the first state again
    module._carry("train", windows[0], 0)
    assert all(torch.equal(a, b) for mine, theirs in zip(module.state["train"], first) for a, b in zip(mine, theirs))


def test_detach_state_handles_lstm_and_gru_states():
    h = torch.ones(1, 2, 3, requires_grad=True) * 2
    assert detach_state([(h, h)])[0][0].grad_fn is None and detach_state([h])[0].grad_fn is None
    assert detach_state(None) is None


def test_a_uniform_model_has_the_vocabulary_size_as_perplexity():
    model = WordLM(50, 8, 16, output_layer="full").eval()
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()
    result = perplexity(model, np.random.default_rng(0).integers(0, 50, 500), batch_size=4, bptt=9)
    assert result["ppl"] == pytest.approx(50.0, rel=1e-5)
    assert result["tokens"] == 4 * (500 // 4 - 1)


def test_tied_weights_are_one_tensor_and_adaptive_softmax_is_a_distribution():
    tied = WordLM(40, 8, 16, tie_weights=True)
    assert tied.decoder.weight is tied.embedding.weight and tied.projection is not None
    assert sum(p.numel() for p in tied.parameters()) == sum(p.numel() for p in WordLM(40, 8, 16).parameters()) \
        - 40 * 16 + (16 * 8 + 8) - 0  # one shared 40x8 matrix; a 16->8 projection instead of a 40x16 matrix
    adaptive = WordLM(40, 8, 16, output_layer="adaptive", adaptive_cutoffs=[10, 20]).eval()
    features, _ = adaptive(torch.randint(0, 40, (2, 5)))
    log_probs = adaptive.log_probs(features)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 5))
    targets = torch.randint(0, 40, (2, 5))
    torch.testing.assert_close(adaptive.token_nll(features, targets),
                               -log_probs.gather(-1, targets.unsqueeze(-1)).flatten())
    with pytest.raises(Exception, match="tie_weights"):
        WordLM(40, 8, 16, tie_weights=True, output_layer="adaptive", adaptive_cutoffs=[10])


def _tiny_lm(steps: int = 300) -> LanguageModel:
    """A GRU LM trained on a repeated sentence until it knows it by heart."""
    lines = ["the quick brown fox jumps over the lazy dog"] * 40
    vocab = build_vocabulary(lines, 1, 100)
    tokenizer = make_tokenizer(vocab)
    ids = encode_lines(tokenizer, lines)
    torch.manual_seed(0)
    model = WordLM(len(vocab), 16, 32, cell="gru", output_layer="full")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    windows = Windows(stream_rows(ids, 4), bptt=10)
    state = None
    for step in range(steps):
        k = step % len(windows)
        state = None if k == 0 else detach_state(state)
        features, state = model(windows[k]["ids"], state)
        loss = model.token_nll(features, windows[k]["targets"]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return LanguageModel(model, {"vocab_size": len(vocab)}, tokenizer), ids


def test_a_tiny_corpus_is_memorised_and_generation_is_reproducible():
    lm, ids = _tiny_lm()
    assert perplexity(lm.model, ids, batch_size=2, bptt=10)["ppl"] < 1.3
    ranked = next_words(lm, "the quick brown", 3)
    assert ranked[0][0] == "fox" and ranked[0][1] > 0.9 and len(ranked) == 3
    text = generate(lm, "the quick", 8, seed=1)
    assert text == generate(lm, "the quick", 8, seed=1)
    assert text.split()[:3] == ["brown", "fox", "jumps"]
    assert generate(lm, "the", 6, top_k=1, seed=5) == generate(lm, "the", 6, top_k=1, seed=9)  # top-1 is greedy
    hot = {generate(lm, "the", 6, temperature=50.0, seed=s) for s in range(5)}
    assert len(hot) > 1  # a high temperature flattens the distribution: seeds differ


def test_bad_prompts_and_sampling_settings_get_clear_errors():
    lm, _ = _tiny_lm(steps=5)
    with pytest.raises(DataError, match="empty"):
        next_words(lm, "   ", 3)
    with pytest.raises(DataError, match="none of the words"):
        next_words(lm, "zebra unicorn", 3)
    for kwargs, message in (({"temperature": 0.0}, "temperature"), ({"temperature": 1e-45}, "temperature"),
                            ({"top_p": 1.5}, "top-p"),
                            ({"top_k": -1}, "top-k")):
        with pytest.raises(DataError, match=message):
            generate(lm, "the", 3, **kwargs)
    with pytest.raises(DataError, match="at least 1"):
        generate(lm, "the", 0)


def _corpus(folder: Path) -> list[str]:
    """The tiny grammar's corpus: a model that learns it reaches a perplexity far below the 13-word
    vocabulary's."""
    return write_grammar_corpus(folder, {"train": 400, "validation": 40, "test": 40})


@pytest.mark.slow
@pytest.mark.cost(40)
def test_the_pipeline_trains_evaluates_and_predicts_on_a_tiny_corpus(tmp_path, empty_mlflow_store):
    import json
    import shutil

    shutil.copyfile(empty_mlflow_store, tmp_path / "mlruns.db")
    common = ["family=lm", "lm.data.name=tiny", "lm.data.source=local", *_corpus(tmp_path),
              "lm.tokenizer.min_frequency=1", "lm.prompts=[the cat,a big]", "lm.model.hidden_size=16", "lm.model.embedding_dim=8",
              # the adaptive softmax, variable windows and locked dropout, through the real training
              "lm.model.adaptive_cutoffs=[4,8]", "lm.stream.variable=true", "lm.model.locked_dropout=true",
              "lm.optim.batch_size=4", "lm.optim.lr=0.02", "lm.stream.eval_batch_size=4",
              "lm.trainer.max_epochs=2", "lm.trainer.num_threads=1", "lm.trainer.progress_bar=false",
              f"tracking.tracking_uri=sqlite:///{tmp_path}/mlruns.db", f"tracking.artifact_location={tmp_path}/art"]
    proc = run_cmd(["python", str(ROOT / "pipelines/train.py"), *common, "hydra.run.dir=outputs/run"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = tmp_path / "outputs/run/model"
    summary = json.loads((model / "train_summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["history"][1]["val_ppl"] < summary["history"][0]["val_ppl"]
    metrics = json.loads((tmp_path / "outputs/run/metrics.json").read_text())
    assert set(metrics) >= {"val_ppl", "test_ppl", "test_tokens"} and metrics["vocab_size"] == 13
    # the grammar's own perplexity is 2 ** (4 / 8) = 1.41 (8 tokens a sentence with <eos>); uniform would be 13
    assert metrics["test_ppl"] < 3, metrics
    predict = ["python", str(ROOT / "pipelines/predict.py"), "--model", str(model)]
    ranked = run_cmd([*predict, "--top-k", "3", "the big"], tmp_path)
    assert ranked.returncode == 0, ranked.stderr
    pairs = ranked.stdout.split()
    assert len(pairs) == 6 and all(0 < float(p) <= 1 for p in pairs[1::2])
    sampled = [run_cmd([*predict, "--generate", "5", "--seed", "3", "the cat"], tmp_path) for _ in range(2)]
    assert sampled[0].returncode == 0 and sampled[0].stdout == sampled[1].stdout
    assert sampled[0].stdout.startswith("the cat ") and len(sampled[0].stdout.split()) >= 5
    for prompt, message in (("", "empty"), ("zebra", "none of the words")):
        bad = run_cmd([*predict, prompt], tmp_path)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
    options = run_cmd([*predict, "--temperature", "0.5", "the cat"], tmp_path)
    assert options.returncode == 2 and "--generate" in options.stderr
    # cutoffs beyond the corpus's real vocabulary: a clear error before any training or MLflow run
    small = run_cmd(["python", str(ROOT / "pipelines/train.py"), *common, "lm.model.adaptive_cutoffs=[4,50]",
                     "hydra.run.dir=outputs/small"], tmp_path)
    assert small.returncode == 2 and "adaptive_cutoffs=[4, 50]" in small.stderr, small.stderr[-2000:]
    assert not (tmp_path / "outputs/small/model").exists()


class Killed(Exception):
    """Stands for a SIGKILL inside training (Lightning turns a KeyboardInterrupt into sys.exit)."""


def _lm_prepared(tiny_project, monkeypatch, overrides: list[str]):
    from rnnlab.config import compose, family_view, validate
    from rnnlab.data.prepare import run_data_stage

    monkeypatch.chdir(tiny_project["dir"])
    cfg = family_view(compose([*tiny_project["overrides"], *overrides]), "lm")
    validate(cfg)
    for stage in ("download", "tokenize"):
        run_data_stage(cfg, stage)
    return cfg, tiny_project["dir"]


@pytest.mark.slow
@pytest.mark.cost(30)
@pytest.mark.timeout(300)
def test_a_run_killed_inside_epochs_resumes_at_the_same_stream_position(tiny_project, monkeypatch, capsys):
    """Killed after window 10 of epoch 1 (last checkpoint after window 7, before any best.ckpt), then after
    window 30 of epoch 2: each time the same command continues from the checkpoint's window with its carried
    state, running loss and random state (dropout is on, windows are variable), and the result equals an
    uninterrupted run's bit for bit."""
    import json

    from rnnlab.training.checkpointing import MidEpochCheckpoint
    from rnnlab.training.train import train

    cfg, work = _lm_prepared(tiny_project, monkeypatch, [
        "lm.stream.bptt=5", "lm.stream.variable=true", "lm.model.dropout=0.3", "lm.model.locked_dropout=true",
        "lm.trainer.max_epochs=2", "lm.trainer.checkpoint_every_n_steps=7"])
    reference = train(cfg, work / "reference", [])
    assert reference["epochs_run"] == 2
    windows = 1600 // 4 // 5  # 200 lines of 8 tokens in 4 rows, windows of about 5
    assert abs(json.loads((work / "data/tokenized/tinylm/stats.json").read_text())["splits"]["train"]["tokens"]
               - 1600) < 10 and windows > 30

    original = MidEpochCheckpoint.on_train_batch_end
    kill_at = {(0, 10), (1, 30)}

    def then_killed(self, trainer, pl_module, outputs, batch, batch_idx):
        original(self, trainer, pl_module, outputs, batch, batch_idx)
        if (trainer.current_epoch, batch_idx + 1) in kill_at:
            kill_at.discard((trainer.current_epoch, batch_idx + 1))
            raise Killed

    monkeypatch.setattr(MidEpochCheckpoint, "on_train_batch_end", then_killed)
    state = work / "ckpt/state.json"
    with pytest.raises(Killed):  # killed inside epoch 1
        train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    first = json.loads(state.read_text())
    assert (first["epochs_done"], first["batches_done"]) == (0, 7) and not (work / "model").exists()
    capsys.readouterr()
    with pytest.raises(Killed):  # resumes inside epoch 1, killed inside epoch 2
        train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    assert "(epoch 0 done, and 7 training batches of epoch 1)" in capsys.readouterr().out
    second = json.loads(state.read_text())
    assert (second["epochs_done"], second["batches_done"]) == (1, 28)
    resumed = train(cfg, work / "model", [], checkpoint_dir=work / "ckpt")
    assert "(epoch 1 done, and 28 training batches of epoch 2)" in capsys.readouterr().out
    assert resumed["resumed"] and resumed["epochs_run"] == 2
    assert resumed["mlflow"]["run_id"] == first["mlflow_run_id"]  # one MLflow run across the three processes
    a, b = (torch.load(work / f"{name}/model.pt", weights_only=True) for name in ("reference", "model"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("train_loss", "val_ppl"):  # the running training loss covers the whole epoch too
        assert [row[key] for row in resumed["history"]] == [row[key] for row in reference["history"]], key
    # the epochs' wall time counts the time before each checkpoint, not the time between the processes
    assert all(0 < row["epoch_seconds"] < 60 for row in resumed["history"]), resumed["history"]
