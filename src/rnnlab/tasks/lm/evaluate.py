"""Using a trained language model: loading it, perplexity of a split, the next-word distribution of a
prompt, sampled continuations (temperature, top-k, top-p, seed), and the evaluate stage's outputs."""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rnnlab.errors import DataError
from rnnlab.io import atomic_dir, load_weights, read_json, write_json



@dataclass
class LanguageModel:
    """A loaded language model: the network, its model.json and its tokenizer (load once, query many)."""

    model: torch.nn.Module
    info: dict
    tokenizer: object


def _load_network(model_dir: Path) -> tuple[torch.nn.Module, dict]:
    """A trained folder's network (a WordLM or a biLM) in eval mode, and its model.json."""
    from rnnlab.io import build_from_info, read_model_info
    from rnnlab.tasks.lm.model import build_lm

    model_dir = Path(model_dir)
    info = read_model_info(model_dir, ("family", "model", "vocab_size", "embedding_dim"), family="lm")
    if not (model_dir / "model.pt").is_file():
        raise DataError(f"{model_dir} is not a trained model folder: model.pt missing; train one with `dvc repro` "
                        "or pipelines/train.py")
    # the GloVe start is in the weights: rebuild with a random embedding of the recorded width, then load
    cfg = {**info["model"], "embedding_mode": "random", "embedding_dim": info["embedding_dim"]}
    model = build_from_info(build_lm, model_dir, cfg, info["vocab_size"])
    load_weights(model_dir / "model.pt", model)
    return model.eval(), info


def load_lm(model_dir: Path) -> LanguageModel:
    from rnnlab.io import load_tokenizer, read_model_info
    from rnnlab.tasks.lm.data import TOKENIZER_FILE

    if read_model_info(model_dir, ("family", "model"), family="lm")["model"].get("bidirectional"):
        raise DataError(f"{model_dir} is a biLM, a frozen encoder of contextual word features "
                        "(classify.model.contextual=elmo uses it), not a next-word model; use a folder of "
                        "models/lm/<dataset>/")
    model, info = _load_network(model_dir)
    return LanguageModel(model, info, load_tokenizer(Path(model_dir) / TOKENIZER_FILE))


@torch.no_grad()
def perplexity(model, ids: np.ndarray, batch_size: int = 32, bptt: int = 70) -> dict:
    """Per-token loss and perplexity of a stream, read as `batch_size` contiguous rows with the state carried
    (every position but each row's first is predicted once)."""
    from rnnlab.tasks.lm.module import Windows, stream_rows

    windows = Windows(stream_rows(ids, batch_size, what="the scored stream", key="lm.stream.eval_batch_size"), bptt)
    state, total, count = None, 0.0, 0
    start = time.perf_counter()
    for k in range(len(windows)):
        w = windows[k]
        features, state = model(w["ids"], state)
        nll = model.token_nll(features, w["targets"])
        total += float(nll.sum())
        count += nll.numel()
    seconds = time.perf_counter() - start
    loss = total / max(count, 1)
    return {"loss": round(loss, 5), "ppl": round(math.exp(min(loss, 50.0)), 3), "tokens": count,
            "tokens_per_second": round(count / max(seconds, 1e-9))}


def encode_prompt(lm: LanguageModel, prompt: str) -> list[int]:
    """`<eos>` (a prompt starts a line, as every line of the corpus does after the previous `<eos>`) and the
    prompt's words; an empty prompt or one with no known word is refused."""
    from rnnlab.predict import check_text
    from rnnlab.tasks.lm.data import EOS_ID, UNK_ID

    prompt = check_text(prompt)
    ids = lm.tokenizer.encode(prompt).ids
    if not ids:
        raise DataError("the prompt is empty: give at least one word, e.g. \"the history of the\"")
    if all(i == UNK_ID for i in ids):
        raise DataError(f"none of the words of {prompt[:60]!r} is in the model's vocabulary "
                        f"({lm.info['vocab_size']:,} words, case-sensitive, punctuation split off by spaces as in "
                        "WikiText: \"in 1995 , the\"); rephrase with more common words")
    return [EOS_ID, *ids]


@torch.no_grad()
def _last_log_probs(lm: LanguageModel, ids: list[int], state=None):
    features, state = lm.model(torch.tensor([ids]), state)
    return lm.model.log_probs(features[:, -1])[0], state


def next_words(lm: LanguageModel, prompt: str, k: int = 10) -> list[tuple[str, float]]:
    """The k most likely next words after `prompt` with their probabilities."""
    if k < 1:
        raise DataError(f"--top-k must be at least 1, got {k}")
    log_probs, _ = _last_log_probs(lm, encode_prompt(lm, prompt))
    values, index = torch.topk(log_probs, min(k, log_probs.numel()))
    return [(lm.tokenizer.id_to_token(int(i)), round(float(v.exp()), 5)) for v, i in zip(values, index)]


def _filter(log_probs: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Logits restricted to the top-k words and to the smallest set holding top_p of the probability."""
    out = log_probs.clone()
    if top_k > 0 and top_k < out.numel():
        cut = torch.topk(out, top_k).values[-1]
        out[out < cut] = -math.inf
    if 0.0 < top_p < 1.0:
        ordered, index = torch.sort(out, descending=True)
        mass = ordered.softmax(-1).cumsum(-1)
        drop = mass - ordered.softmax(-1) >= top_p  # words after the set already holding top_p
        out[index[drop]] = -math.inf
    return out


@torch.no_grad()
def generate(lm: LanguageModel, prompt: str, words: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0, allow_unknown: bool = False) -> str:
    """`words` sampled words after the prompt (`<eos>` printed as a line break). Same seed, same text."""
    from rnnlab.tasks.lm.data import EOS_ID, UNK_ID

    if words < 1:
        raise DataError(f"--generate must be at least 1 word, got {words}")
    if not temperature >= 0.01:
        raise DataError(f"--temperature must be at least 0.01 (1 = the model's distribution; for the single most "
                        f"likely word each time use --top-k 1), got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise DataError(f"--top-p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise DataError(f"--top-k must be 0 (no limit) or more, got {top_k}")
    generator = torch.Generator().manual_seed(int(seed))
    log_probs, state = _last_log_probs(lm, encode_prompt(lm, prompt))
    out = []
    for _ in range(words):
        scores = log_probs / temperature
        if not allow_unknown:
            scores[UNK_ID] = -math.inf
        scores = _filter(scores, top_k, top_p)
        word = int(torch.multinomial(scores.softmax(-1), 1, generator=generator))
        out.append(word)
        log_probs, state = _last_log_probs(lm, [word], state)
    text = " ".join("\n" if i == EOS_ID else lm.tokenizer.id_to_token(i) for i in out)
    return text.replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n")


def _curve_png(history: list[dict], title: str, path: Path) -> None:
    from rnnlab.reporting.figures import new_figure, save_figure

    fig, ax = new_figure(5.5, 3.5)
    epochs = [row["epoch"] for row in history]
    for key, label in (("train_ppl", "train"), ("val_ppl", "validation")):
        if all(key in row for row in history):
            ax.plot(epochs, [row[key] for row in history], marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path)


@torch.no_grad()
def bilm_perplexity(model, ids: np.ndarray, batch_size: int = 32, bptt: int = 70) -> dict:
    """A biLM's perplexity of a stream in each direction (forward: the next word; backward: the previous
    one, over the reversed stream), both states carried across windows, and of both together."""
    from rnnlab.tasks.lm.module import Windows, stream_rows

    rows = lambda x: stream_rows(x, batch_size, what="the scored stream", key="lm.stream.eval_batch_size")  # noqa: E731
    windows = Windows(rows(ids), bptt, backward=rows(ids[::-1].copy()))
    state, totals, count = None, [0.0, 0.0], 0
    for k in range(len(windows)):
        nll, state = model.window_nll(windows[k], state)
        half = nll.numel() // 2
        totals[0] += float(nll[:half].sum())
        totals[1] += float(nll[half:].sum())
        count += half
    ppl = lambda total: round(math.exp(min(total / max(count, 1), 50.0)), 3)  # noqa: E731
    return {"ppl": ppl(sum(totals) / 2), "ppl_forward": ppl(totals[0]), "ppl_backward": ppl(totals[1]),
            "loss": round(sum(totals) / 2 / max(count, 1), 5), "tokens": count}


def _evaluate_bilm(tokenized: Path, model_dir: Path, metrics_path: Path, plots_dir: Path, eval_batch_size: int,
                   eval_bptt: int, log_to_mlflow: bool) -> dict:
    """A biLM (a frozen encoder, not a next-word model): perplexity per direction, the learning curve."""
    from rnnlab.tasks.lm.data import load_streams
    from rnnlab.tracking.mlflow_utils import log_to_run

    model, info = _load_network(model_dir)
    streams, _ = load_streams(Path(tokenized))
    scores = {split: bilm_perplexity(model, streams[split], eval_batch_size, eval_bptt)
              for split in ("validation", "test")}
    metrics = {"val_ppl": scores["validation"]["ppl"], "test_ppl": scores["test"]["ppl"],
               "test_loss": scores["test"]["loss"], "test_ppl_forward": scores["test"]["ppl_forward"],
               "test_ppl_backward": scores["test"]["ppl_backward"], "test_tokens": scores["test"]["tokens"],
               "vocab_size": info["vocab_size"]}
    summary = read_json(Path(model_dir) / "train_summary.json")
    with atomic_dir(plots_dir) as tmp:
        _curve_png(summary["history"], f"{summary['dataset']} biLM (test ppl {metrics['test_ppl']:.1f})",
                   tmp / "curve.png")
        if log_to_mlflow:
            run = summary["mlflow"]
            log_to_run(run["tracking_uri"], run["run_id"], {k: metrics[k] for k in (
                "test_ppl", "test_ppl_forward", "test_ppl_backward")}, [tmp / "curve.png"], "evaluation")
    write_json(metrics_path, metrics)
    return metrics


def evaluate(tokenized: Path, model_dir: Path, metrics_path: Path, plots_dir: Path, eval_batch_size: int,
             eval_bptt: int, prompts: list[str], log_to_mlflow: bool = True) -> dict:
    """Validation and test perplexity (metrics file, MLflow), the learning curve (CSV for DVC plots, PNG), and
    each of `prompts`' next words and a sampled continuation (samples.json, for the report)."""
    from rnnlab.io import read_model_info
    from rnnlab.tasks.lm.data import TOKENIZER_FILE, load_streams
    from rnnlab.tracking.mlflow_utils import log_to_run

    if read_model_info(model_dir, ("family", "model"), family="lm")["model"].get("bidirectional"):
        return _evaluate_bilm(tokenized, model_dir, metrics_path, plots_dir, eval_batch_size, eval_bptt,
                              log_to_mlflow)
    lm = load_lm(model_dir)
    summary = read_json(Path(model_dir) / "train_summary.json")
    streams, tokenizer = load_streams(Path(tokenized))
    if (Path(model_dir) / TOKENIZER_FILE).read_bytes() != (Path(tokenized) / TOKENIZER_FILE).read_bytes():
        raise DataError(f"the vocabulary of {tokenized} ({tokenizer.get_vocab_size():,} words) differs from the one "
                        f"{model_dir} was trained with ({lm.info['vocab_size']:,}); re-run the train stage")
    for prompt in prompts:  # checked before the long part
        try:
            encode_prompt(lm, prompt)
        except DataError as err:
            raise DataError(f"lm.prompts: {err}") from None
    scores = {split: perplexity(lm.model, streams[split], eval_batch_size, eval_bptt)
              for split in ("validation", "test")}
    metrics = {"val_ppl": scores["validation"]["ppl"], "val_loss": scores["validation"]["loss"],
               "test_ppl": scores["test"]["ppl"], "test_loss": scores["test"]["loss"],
               "test_tokens": scores["test"]["tokens"], "vocab_size": lm.info["vocab_size"]}
    # (the speed is printed, not written: outputs depend on inputs only, so a re-run changes nothing)
    print(f"evaluate: {scores['test']['tokens_per_second']:,} tokens/s")
    samples = [{"prompt": p, "next_words": next_words(lm, p, 5),
                "continuation": generate(lm, p, 20, temperature=0.8, top_k=50, seed=0)} for p in prompts]
    with atomic_dir(plots_dir) as tmp:
        with (tmp / "curve.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["epoch", "train_ppl", "val_ppl"])
            writer.writerows([r["epoch"], r.get("train_ppl"), r.get("val_ppl")] for r in summary["history"])
        _curve_png(summary["history"], f"{summary['dataset']} {summary['variant']} (test ppl {metrics['test_ppl']:.1f})",
                   tmp / "curve.png")
        write_json(tmp / "samples.json", samples)
        if log_to_mlflow:
            run = summary["mlflow"]
            log_to_run(run["tracking_uri"], run["run_id"], {k: metrics[k] for k in ("test_ppl", "test_loss")},
                       [tmp / "curve.png", tmp / "samples.json"], "evaluation")
    write_json(metrics_path, metrics)
    return metrics
