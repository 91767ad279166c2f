"""Latency of the registered champions served by `mlflow models serve` (HTTP, JSON), for a batch of 1 and of 32
sentences, classification and translation, against the same model called in this process: the MLflow pyfunc
model (`mlflow.pyfunc.load_model(...).predict`) and the family's own predict code on the loaded model (what
the pyfunc model wraps). Reads the champions of the last `dvc repro` from the project's MLflow store.

    .venv/bin/python benchmarks/bench_serving.py [--requests 100] [--batches 30]

One server at a time on 127.0.0.1 (a free port, one uvicorn worker, as `mlflow models serve` starts it); one
client sending one request at a time (latency, not throughput). Each batch-1 request sends the next of 32
sentences; each batch-32 request sends all 32. Before timing, the served answers are checked against what
`pipelines/predict.py` prints for the same sentences: a mismatch stops the benchmark with an error.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# Written for this benchmark: 32 short movie-review sentences, 32 short everyday English sentences.
REVIEWS = [
    "a gripping , beautifully shot film", "the plot is thin and the jokes fall flat", "an unexpected delight",
    "two hours i will never get back", "the cast is wonderful and the script is sharp", "dull , slow and far too long",
    "a warm and funny story about growing up", "it never decides what it wants to be", "the best film of the year",
    "a mess of a movie", "moving without being sentimental", "the dialogue is stiff and the acting is worse",
    "smart , tender and often very funny", "i kept checking my watch", "a small film with a big heart",
    "nothing here you have not seen before", "the director knows exactly what she is doing",
    "a tired sequel that nobody asked for", "the music alone is worth the ticket", "clumsy and loud",
    "a quiet triumph", "the story goes nowhere", "visually stunning and emotionally rich", "painfully unfunny",
    "a clever thriller with real surprises", "the characters are thin as paper", "charming from start to finish",
    "a boring film about boring people", "an honest , affecting drama", "the ending makes no sense",
    "fresh , lively and original", "badly written and badly acted",
]
SENTENCES = [
    "I like tea .", "Tom wants to eat an apple .", "Where is the station ?", "She is reading a book .",
    "We are going home .", "It is very cold today .", "Do you speak Spanish ?", "I lost my keys .",
    "The dog is sleeping .", "Can you help me ?", "My brother lives in Madrid .", "I have two sisters .",
    "They bought a new car .", "What time is it ?", "I am tired .", "The children are playing outside .",
    "Please close the door .", "He works in a hospital .", "I do not understand .", "This book is mine .",
    "We ate dinner together .", "The water is hot .", "I need a doctor .", "She sings very well .",
    "Open the window , please .", "I will call you tomorrow .", "The store is closed .", "Tom is my friend .",
    "I want to learn French .", "It is raining again .", "Where do you live ?", "I forgot his name .",
]
CHAMPIONS = {"classify": REVIEWS, "seq2seq": SENTENCES}  # each family's registered champion


def _post(url: str, texts: list[str]) -> list[str]:
    body = json.dumps({"inputs": texts}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())["predictions"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100, help="timed requests of one sentence")
    ap.add_argument("--batches", type=int, default=30, help="timed requests of 32 sentences")
    ap.add_argument("--model", action="append", default=[], metavar="FAMILY=URI",
                    help="serve this MLflow model URI (models:/..., runs:/.../model) instead of the family's champion")
    ap.add_argument("--label", default="current")
    a = ap.parse_args()
    chosen = dict(item.split("=", 1) for item in a.model)

    import mlflow
    from omegaconf import OmegaConf

    from rnnlab.errors import DataError
    from rnnlab.predict import model_family
    from rnnlab.tracking.serving import predict_parser, start_server, stop_server

    cfg = OmegaConf.load(common.ROOT / "params.yaml")
    tracking_uri = str(cfg.tracking.tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    figures: dict = {"server": "mlflow models serve --env-manager local (1 uvicorn worker), JSON {\"inputs\": [...]}",
                     "torch_threads_in_process": None}
    for family_name, texts in CHAMPIONS.items():
        uri = chosen.get(family_name) or f"models:/rnnlab-{family_name}-{cfg[family_name].data.name}@champion"
        pyfunc = mlflow.pyfunc.load_model(uri)
        folder = Path(pyfunc.unwrap_python_model().model_dir)
        family = model_family(folder)
        args = predict_parser(family).parse_args([])
        loaded = family.load_predictor(folder)
        usable = []  # a model trained on little data (the CI smoke run) may know none of a sentence's words
        for text in texts:
            try:
                usable.append((text, "\n".join(family.predict(folder, [text], args))))  # what the CLI prints
            except DataError:
                pass
        if len(usable) < 8:
            sys.exit(f"error: {family_name}: the model refuses {len(texts) - len(usable)} of the {len(texts)} sentences")
        usable = (usable * 32)[:32]  # the batch stays 32 sentences; repeats only where some were refused
        texts, expected = [t for t, _ in usable], [e for _, e in usable]
        ones = [[texts[i % len(texts)]] for i in range(a.requests)]
        fulls = [list(texts)] * a.batches
        port = common.free_port()
        server = start_server(uri, tracking_uri, port, log_path=Path("/tmp") / f"rnnlab-bench-serve-{port}.log")
        url = f"http://127.0.0.1:{port}/invocations"
        try:
            served = _post(url, texts)
            if served != expected or pyfunc.predict(texts) != expected:
                sys.exit(f"error: {family_name}: the served or pyfunc answers differ from the CLI's")
            for _ in range(5):  # warm
                _post(url, texts[:1]), pyfunc.predict(texts[:1]), family.predict_each(loaded, texts[:1], args)
            run_name = mlflow.tracking.MlflowClient().get_run(pyfunc.metadata.run_id).info.run_name
            row = {"model": uri, "run": run_name, "distinct_sentences": len(set(texts))}  # <dataset>/<variant>/seed<n>
            for label, batches in (("batch_1", ones), ("batch_32", fulls)):
                row[label] = {
                    "http": common.latency_ms(common.timed_calls(lambda b: _post(url, b), batches)),
                    "pyfunc_in_process": common.latency_ms(common.timed_calls(pyfunc.predict, batches)),
                    "family_code_in_process": common.latency_ms(
                        common.timed_calls(lambda b: family.predict_each(loaded, b, args), batches)),
                }
                row[label]["http_over_family_code_p50"] = round(
                    row[label]["http"]["p50_ms"] / row[label]["family_code_in_process"]["p50_ms"], 2)
                print(family_name, label, json.dumps(row[label]), flush=True)
        finally:
            stop_server(server)
        figures[family_name] = row
    import torch

    figures["torch_threads_in_process"] = torch.get_num_threads()
    models = "".join(f" --model {k}={v}" for k, v in chosen.items())
    common.record("serving_latency", a.label, figures, f"python benchmarks/bench_serving.py --requests {a.requests} "
                  f"--batches {a.batches}{models} --label {a.label!r}")


if __name__ == "__main__":
    main()
