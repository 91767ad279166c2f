"""train() and evaluate() in-process on tiny generated data."""

import json

import pytest
import torch

from rnnlab.config import compose, family_view, validate
from rnnlab.data.prepare import run_data_stage, tokenized_dir
from rnnlab.errors import DataError
from rnnlab.tasks.classify.evaluate import evaluate, load_model
from rnnlab.training.train import train

pytestmark = pytest.mark.slow  # every test here trains a model


def test_train_writes_a_complete_model_folder_and_evaluate_scores_it(prepared):
    cfg, work = prepared
    cfg.curves_dir, cfg.out_dir = str(work / "curves"), str(work / "model")  # as the DVC stage passes them
    summary = train(cfg, work / "model", ["unit-test"])
    names = sorted(p.name for p in (work / "model").iterdir())
    # the learning curves: one table per quantity, one row per epoch, the values of the history
    from rnnlab.training.curves import read_curve

    assert sorted(str(p.relative_to(work / "curves")) for p in (work / "curves").rglob("*.csv")) == \
        ["acc/model.csv", "loss/model.csv"]
    loss = read_curve(work / "curves/loss/model.csv")
    assert list(loss[0]) == ["epoch", "train_loss", "val_loss"]
    assert [(int(r["epoch"]), float(r["train_loss"]), float(r["val_loss"])) for r in loss] == \
        [(h["epoch"], h["train_loss"], h["val_loss"]) for h in summary["history"]]
    acc = read_curve(work / "curves/acc/model.csv")
    assert list(acc[0]) == ["epoch", "train_acc", "val_acc"] and len(acc) == summary["epochs_run"]
    assert names == ["config.yaml", "model.json", "model.pt", "tokenizer.json", "train_summary.json"]
    model_json = json.loads((work / "model/model.json").read_text())
    assert model_json["family"] == "classify" and model_json["config"]["classify"]["model"]["cell"] == cfg.model.cell
    assert summary["epochs_run"] == len(summary["history"]) >= 1
    assert all(row["epoch_seconds"] > 0 for row in summary["history"])
    # weights load with weights_only=True and reproduce the module's behaviour
    model, info = load_model(work / "model")
    assert info["label_names"] == ["neg", "pos"]
    metrics = evaluate(tokenized_dir(cfg), work / "model", work / "m.json", work / "plots")
    assert json.loads((work / "m.json").read_text())["accuracy"] == metrics["accuracy"]
    assert sorted(p.name for p in (work / "plots").iterdir()) == [
        "confusion.csv", "confusion.png", "details.json", "misclassified.jsonl"]
    assert sorted(metrics) == ["accuracy", "macro_f1", "n"]
    details = json.loads((work / "plots/details.json").read_text())
    assert sum(map(sum, details["confusion"])) == metrics["n"]
    assert set(details["per_class"]) == {"neg", "pos"}


def test_the_mlflow_run_has_config_system_info_throughput_and_a_loadable_model(prepared, capfd):
    import warnings

    import mlflow
    from mlflow.tracking import MlflowClient

    cfg, work = prepared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(cfg, work / "model", ["unit-test"])
    # logging the model adds no noise: no per-file progress bar, no MLflow advice about type hints
    assert "Downloading artifacts" not in capfd.readouterr().err
    assert not [w for w in caught if "type hint" in str(w.message)], [str(w.message) for w in caught]
    assert all(row["train_tokens_per_second"] > 0 for row in summary["history"])
    run_info = summary["mlflow"]
    client = MlflowClient(tracking_uri=run_info["tracking_uri"])
    run = client.get_run(run_info["run_id"])
    params = run.data.params
    assert params["classify.model.cell"] == cfg.model.cell and params["classify.optim.lr"] == str(cfg.optim.lr)
    assert params["family"] == "classify" and params["seed"] == str(cfg.seed)
    assert params["system.torch"] == torch.__version__
    assert int(params["system.torch_threads"]) >= 1 and params["system.accelerator"] == "cpu"
    # the CPU type decides float rounding: recorded in the run and in train_summary.json
    assert params["system.cpu_capability"] == torch.backends.cpu.get_cpu_capability() == \
        summary["machine"]["cpu_capability"]
    assert params["system.cpu_model"] == summary["machine"]["cpu_model"] != ""
    assert run.data.metrics["train_tokens_per_second_mean"] == summary["train_tokens_per_second"] > 0
    history = client.get_metric_history(run.info.run_id, "train_tokens_per_second")
    assert len(history) == summary["epochs_run"]
    assert run.info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "checkpoint"} <= names
    # the logged MLflow model is a pyfunc "model from code" (this repository's pyfunc_model.py, no pickled
    # python_model): loading it unpickles nothing, and it predicts what the predict CLI prints
    import argparse

    from mlflow.models import Model

    from rnnlab.predict import model_family

    mlflow.set_tracking_uri(run_info["tracking_uri"])
    local = mlflow.artifacts.download_artifacts(run_info["model_uri"], dst_path=str(work / "downloaded"))
    flavor = Model.load(local).flavors["python_function"]
    assert flavor.get("model_code_path", "").endswith("pyfunc_model.py") and "python_model" not in flavor
    assert not [p for p in (work / "downloaded").rglob("*") if p.suffix in (".pkl", ".pickle")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = mlflow.pyfunc.load_model(run_info["model_uri"])
    assert not [w for w in caught if "type hint" in str(w.message)], [str(w.message) for w in caught]
    family = model_family(work / "model")
    parser = argparse.ArgumentParser()
    family.add_predict_arguments(parser)
    texts = ["the film was great", "an awful boring film"]
    # one answer per text: the lines the CLI prints for it
    expected = ["\n".join(family.predict(work / "model", [text], parser.parse_args([]))) for text in texts]
    assert logged.predict(texts) == expected and expected[0].split("\t")[0] in ("neg", "pos")
    import pandas as pd

    assert logged.predict(pd.DataFrame({"text": texts})) == expected
    # a signature (texts in, one string per text out, the family's options as params) and an input example
    model_meta = Model.load(local)
    assert [c.type.name for c in model_meta.signature.inputs.inputs] == ["string"]
    assert [p.name for p in model_meta.signature.params] == ["no_attention"]
    assert model_meta.load_input_example(local) == [family.predict_example]


def test_cosine_schedule_and_word_dropout_train(prepared):
    cfg, work = prepared
    cfg.optim.scheduler = "cosine"
    cfg.model.word_dropout = 0.1
    cfg.trainer.max_epochs = 2
    validate(cfg)
    summary = train(cfg, work / "cosine", [])
    assert summary["epochs_run"] == 2


from rnnlab.training.train import _cpu_lstm_mixed_supported  # noqa: E402

CPU_BF16_LSTM = _cpu_lstm_mixed_supported(torch.bfloat16)


@pytest.mark.skipif(not CPU_BF16_LSTM, reason="this CPU has no bf16 LSTM kernel (oneDNN needs AVX-512)")
def test_bf16_mixed_precision_trains_with_gradient_clipping(prepared):
    """The optimizer is fused in full precision only: Lightning's mixed precision refuses to clip a fused
    optimizer's gradients (found by benchmarks/bench_train.py --precision bf16-mixed)."""
    cfg, work = prepared
    cfg.trainer.precision = "bf16-mixed"
    cfg.trainer.max_epochs = 1
    assert cfg.trainer.gradient_clip_val > 0
    validate(cfg)
    summary = train(cfg, work / "bf16", [])
    assert summary["epochs_run"] == 1 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in summary["history"])


def test_bf16_with_a_gru_trains_on_any_cpu(prepared):
    """GRU's reduced-precision CPU kernel needs no AVX-512: mixed precision with gradient clipping trains."""
    cfg, work = prepared
    cfg.trainer.precision = "bf16-mixed"
    cfg.trainer.max_epochs = 1
    cfg.model.cell = "gru"
    validate(cfg)
    summary = train(cfg, work / "bf16-gru", [])
    assert summary["epochs_run"] == 1 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in summary["history"])


def test_cpu_without_bf16_lstm_is_refused_before_any_run_or_output(prepared, monkeypatch):
    """Where the CPU cannot run a bf16 LSTM, training stops with the fix in one line, before an MLflow run
    is opened (none is left RUNNING) and before anything is written."""
    import mlflow

    import rnnlab.training.train as train_module

    cfg, work = prepared
    cfg.trainer.precision = "bf16-mixed"
    cfg.model.cell = "lstm"
    validate(cfg)
    monkeypatch.setattr(train_module, "_cpu_lstm_mixed_supported", lambda dtype: False)
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    before = len(mlflow.search_runs(search_all_experiments=True))
    with pytest.raises(train_module.PrecisionError, match=r"precision=32-true.*model.cell=gru"):
        train(cfg, work / "refused", [])
    assert not (work / "refused").exists()
    assert len(mlflow.search_runs(search_all_experiments=True)) == before


def test_step_checkpoints_on_a_family_with_shuffled_batches_are_refused_before_any_run(prepared):
    """Classification shuffles its batches each epoch, so it cannot resume inside one: asking for step
    checkpoints there is a clear error (what is wrong, the fix) before any MLflow run or output."""
    import mlflow

    from rnnlab.errors import ConfigError

    cfg, work = prepared
    cfg.trainer.checkpoint_every_n_steps = 5
    validate(cfg)
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    before = len(mlflow.search_runs(search_all_experiments=True))
    with pytest.raises(ConfigError, match=r"classify.trainer.checkpoint_every_n_steps=5: .*shuffled.*"
                                          r"set classify.trainer.checkpoint_every_n_steps=0"):
        train(cfg, work / "refused", [], checkpoint_dir=work / "ckpt")
    assert not (work / "refused").exists() and not list((work / "ckpt").glob("*.ckpt"))
    assert len(mlflow.search_runs(search_all_experiments=True)) == before
    cfg.trainer.checkpoint_every_n_steps = -1
    with pytest.raises(ConfigError, match=r"checkpoint_every_n_steps"):
        validate(cfg)


def test_same_seed_gives_identical_weights(prepared):
    cfg, work = prepared
    cfg.trainer.max_epochs = 1
    train(cfg, work / "a", [])
    train(cfg, work / "b", [])
    a = torch.load(work / "a/model.pt", weights_only=True)
    b = torch.load(work / "b/model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_training_leaves_no_model_folder(prepared, monkeypatch):
    cfg, work = prepared
    import rnnlab.training.train as train_module

    def broken(*args, **kwargs):
        raise RuntimeError("simulated crash while saving")

    monkeypatch.setattr(train_module, "write_json", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        train(cfg, work / "crashed", [])
    assert not (work / "crashed").exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".crashed")]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment_name).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_evaluate_rejects_a_folder_that_is_not_a_model(prepared):
    cfg, work = prepared
    (work / "empty").mkdir()
    with pytest.raises(DataError, match="not a trained model folder"):
        evaluate(tokenized_dir(cfg), work / "empty", work / "m.json", work / "plots")


def test_translation_with_bpe_input_feeding_and_teacher_forcing_schedule(tiny_project, monkeypatch):
    """The step-by-step decoder path (input feeding, scheduled teacher forcing) and BPE tokenizers
    through train() and the test evaluation."""
    from rnnlab.tasks.seq2seq.evaluate import evaluate as evaluate_seq2seq
    from rnnlab.tasks.seq2seq.evaluate import load_translator

    monkeypatch.chdir(tiny_project["dir"])
    cfg = family_view(compose([*tiny_project["overrides"], "seq2seq.tokenizer.source.kind=bpe",
                               "seq2seq.tokenizer.target.kind=bpe", "seq2seq.model.attention=general",
                               "seq2seq.model.input_feeding=true", "seq2seq.model.teacher_forcing_final=0.5",
                               "seq2seq.trainer.max_epochs=2"]), "seq2seq")
    validate(cfg)
    for stage in ("download", "tokenize", "embed"):
        run_data_stage(cfg, stage)
    summary = train(cfg, tiny_project["dir"] / "mt", [])
    assert [row["teacher_forcing"] for row in summary["history"]] == [1.0, 0.5]
    assert {"val_bleu", "val_loss", "train_loss"} <= set(summary["history"][-1])
    # what the attention does, epoch by epoch: the share of the gradient reaching it, its peakedness
    assert all(0 < row["attn_grad_share"] < 1 and 0 <= row["val_attn_entropy"] <= 1 for row in summary["history"])
    names = sorted(p.name for p in (tiny_project["dir"] / "mt").iterdir())
    assert names == ["config.yaml", "model.json", "model.pt", "source_tokenizer.json", "target_tokenizer.json",
                     "train_summary.json"]
    translator = load_translator(tiny_project["dir"] / "mt")
    assert translator.model.input_feeding and translator.model.attention_kind == "general"
    metrics = evaluate_seq2seq(tokenized_dir(cfg), tiny_project["dir"] / "mt", tiny_project["dir"] / "m.json",
                               tiny_project["dir"] / "plots")
    assert metrics["sources"] == 11 and 0 <= metrics["bleu_beam"] <= 100
    assert 0 <= metrics["unk_share_greedy"] <= 1 and 0 <= metrics["unk_share_beam"] <= 1
    # forbidding <unk> leaves no output with one; copying replaces each by a source word
    for policy in ("forbid", "copy"):
        again = evaluate_seq2seq(tokenized_dir(cfg), tiny_project["dir"] / "mt", tiny_project["dir"] / "m2.json",
                                 tiny_project["dir"] / f"plots-{policy}", log_to_mlflow=False, unknown=policy)
        assert again["unk_share_greedy"] == again["unk_share_beam"] == 0.0
        samples = (tiny_project["dir"] / f"plots-{policy}/samples.jsonl").read_text()
        assert "<unk>" not in samples
    assert len(list((tiny_project["dir"] / "plots").glob("attention_*.png"))) >= 1
