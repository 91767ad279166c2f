"""The explorer's latency: requests through its HTTP API (what the page sends), on the models of the last
`dvc repro`, against the same work called directly (model, n-best, heatmap figure) in this process.

    .venv/bin/python benchmarks/bench_explorer.py [--requests 60] [--concurrent 20] [--screenshots docs/images]

- translation: beam 5, 3 outputs listed, a 6-word English sentence (goal: p95 under 300 ms on 2 cores);
- classification: one sentence (goal: p95 under 50 ms);
- 20 requests sent at once (half each kind) must all come back with the answer a lone request gets.
The server runs in this process on 127.0.0.1 (a free port). Requests use Gradio's documented HTTP API
(`POST /gradio_api/call/<name>`, then the event's result stream: what `curl` or any script sends, through the
same queue as the page); gradio_client adds about 70 ms of its own per request, measured here on a no-op
endpoint of the same kind of server for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

CLASSIFY_TEXT = "a gripping, beautifully shot film"
TRANSLATE_TEXT = "Tom wants to eat an apple."  # 6 words


def call(http, url: str, api: str, *args) -> list:
    """One request through Gradio's HTTP API: the outputs of `api` for `args` (an "error" event raises)."""
    event = http.post(f"{url}gradio_api/call/{api}", json={"data": list(args)})
    event.raise_for_status()
    with http.stream("GET", f"{url}gradio_api/call/{api}/{event.json()['event_id']}") as stream:
        body = "".join(stream.iter_text())
    kind = next((line[len("event: "):] for line in body.splitlines() if line.startswith("event: ")), "")
    data = [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]
    if kind != "complete" or not data:
        raise RuntimeError(f"{api}: {body[:300]}")
    return json.loads(data[-1])


def client_floor(n: int) -> dict:
    """gradio_client's own cost: a no-op endpoint on a server of the same kind, through gradio_client."""
    import gradio as gr
    from gradio_client import Client

    with gr.Blocks(analytics_enabled=False) as noop:
        box, out = gr.Textbox(), gr.Textbox()
        gr.Button().click(lambda x: x, box, out, api_name="noop")
    noop.queue()
    _, url, _ = noop.launch(server_name="127.0.0.1", server_port=common.free_port(), prevent_thread_lock=True,
                            quiet=True, ssr_mode=False)
    try:
        client = Client(url, verbose=False)
        client.predict("x", api_name="/noop")
        return common.latency_ms(common.timed_calls(lambda _: client.predict("x", api_name="/noop"), range(n)), 1)
    finally:
        noop.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--label", default="current")
    ap.add_argument("--screenshots", type=Path, help="also save a screenshot of each tab here (headless Chromium)")
    a = ap.parse_args()

    import httpx
    from omegaconf import OmegaConf

    from rnnlab.explorer.app import build_app, serve
    from rnnlab.explorer.models import ModelCache, family_models
    from rnnlab.explorer.tab import tab_for
    from rnnlab.tasks.classify.explorer_tab import classify_view
    from rnnlab.tasks.seq2seq.explorer_tab import chosen_output, translate_view

    cfg = OmegaConf.load(common.ROOT / "params.yaml")
    families = {f: family_models(cfg, f, common.ROOT) for f in ("classify", "seq2seq")}
    missing = [found.missing for found in families.values() if found.missing]
    if missing:
        sys.exit("error: " + " ".join(missing))
    models = {f: found.default for f, found in families.items()}
    app, url = serve(build_app(families), "127.0.0.1", common.free_port(), block=False)
    http = httpx.Client(timeout=60)
    try:
        args = {"classify": (CLASSIFY_TEXT, models["classify"].label),
                "translate": (TRANSLATE_TEXT, models["seq2seq"].label, 5, 0.6, 3)}
        requests = {kind: (lambda kind=kind: call(http, url, kind, *args[kind])) for kind in args}
        cache = ModelCache({f: tab_for(f).load for f in families})
        classifier, translator = cache.get(models["classify"]), cache.get(models["seq2seq"])

        def direct_translate():
            view = translate_view(translator, TRANSLATE_TEXT, 5, 0.6, 3)
            return chosen_output(view, 1)

        direct = {"classify": lambda: classify_view(classifier, CLASSIFY_TEXT), "translate": direct_translate}
        figures: dict = {"models": {f: str(m.path.relative_to(common.ROOT)) for f, m in models.items()},
                         "translate_text": TRANSLATE_TEXT, "classify_text": CLASSIFY_TEXT}
        expected = {}
        for kind in ("classify", "translate"):
            expected[kind] = requests[kind]()  # warm: model loaded, first figure drawn
            for _ in range(3):
                requests[kind]()
                direct[kind]()
            figures[kind] = {way: common.latency_ms(common.timed_calls(lambda _, f=calls[kind]: f(), range(a.requests)), 1)
                             for way, calls in (("http", requests), ("direct", direct))}
            print(kind, figures[kind], flush=True)
        # many at once: every answer must be the one a lone request gets
        kinds = ["classify", "translate"] * (a.concurrent // 2)
        clients = [httpx.Client(timeout=120) for _ in kinds]  # one connection per simultaneous user
        start = time.perf_counter()
        with ThreadPoolExecutor(a.concurrent) as pool:
            answers = list(pool.map(lambda job: (job[1], call(job[0], url, job[1], *args[job[1]])),
                                    zip(clients, kinds)))
        wall = time.perf_counter() - start
        # the part that must not change: the label and probabilities; the greedy output and the n-best table
        same = [k for k, answer in answers if answer[1:3] == expected[k][1:3]]
        figures["concurrent"] = {"requests": len(kinds), "answered_correctly": len(same), "wall_s": round(wall, 2)}
        print("concurrent", figures["concurrent"], flush=True)
        figures["gradio_client_noop"] = client_floor(a.requests)
        print("gradio_client on a no-op endpoint", figures["gradio_client_noop"], flush=True)
        if a.screenshots:
            from rnnlab.explorer.browser import check_page

            check_page(url, ["classify", "seq2seq"], {"classify": CLASSIFY_TEXT, "seq2seq": TRANSLATE_TEXT},
                       screenshots=a.screenshots)
            print(f"screenshots in {a.screenshots}", flush=True)
    finally:
        http.close()
        app.close()
    if figures["concurrent"]["answered_correctly"] != figures["concurrent"]["requests"]:
        sys.exit(f"error: only {figures['concurrent']['answered_correctly']} of {figures['concurrent']['requests']} "
                 "concurrent requests got the answer a lone request gets")
    common.record("explorer_latency", a.label, figures,
                  f"python benchmarks/bench_explorer.py --requests {a.requests} --concurrent {a.concurrent} "
                  f"--label {a.label!r}")


if __name__ == "__main__":
    main()
