"""The explorer page: a tab per task family, the same input through two models side by side, and the
server (Gradio, on 127.0.0.1 only)."""

from __future__ import annotations

import ipaddress
import os

from rnnlab.errors import ConfigError
from rnnlab.explorer.html import message
from rnnlab.explorer.models import FamilyModels, ModelCache
from rnnlab.explorer.tab import Tab, guarded, tab_for

CSS = """
.rnnlab-error { background: #fde2e1; border: 1px solid #e0a0a0; padding: 8px; border-radius: 4px; }
.rnnlab-note { background: #eef3fb; border: 1px solid #b8c7e0; padding: 6px; border-radius: 4px; margin-top: 4px; }
.rnnlab-output { font-size: 1.1em; padding: 4px 0; }
mark.rnnlab-copied { background: #ffe08a; border-bottom: 2px dotted #b58900; }
"""


def check_host(host: str) -> str:
    """Only a loopback address: the explorer serves models and files of this machine to whoever connects."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"--host {host}: the explorer listens on this machine only (127.0.0.1 or another "
                          "loopback address); to reach it from elsewhere, forward the port (ssh -L 7860:127.0.0.1:7860)")
    return host


def _missing(gr, found: FamilyModels | None, family: str) -> None:
    if found is None or found.missing:
        gr.HTML(message(found.missing if found else f"the {family} family has no explorer tab yet", "note"),
                elem_id=f"{family}-missing")


def build_app(families: dict[str, FamilyModels]):
    """The Gradio page for the models found per family (rnnlab.explorer.models.family_models)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves this machine
    import gradio as gr

    tabs = {family: tab_for(family) for family in families}
    cache = ModelCache({family: tab.load for family, tab in tabs.items() if tab is not None})
    with gr.Blocks(title="rnnlab explorer", analytics_enabled=False) as app:
        gr.Markdown("# rnnlab explorer\nType a sentence and watch the trained models handle it. Models: the "
                    "registry's champion of each family first, then every variant of the last `dvc repro`.")
        with gr.Tabs():
            for family, found in families.items():
                tab = tabs[family]
                with gr.Tab(tab.title if tab else family, elem_id=f"tab-{family}"):
                    if tab is None or found.missing:
                        _missing(gr, found if tab else None, family)
                    else:
                        tab.build(gr, found, cache)
            with gr.Tab("Side by side", elem_id="tab-side"):
                _side_by_side(gr, {f: (tab, families[f]) for f, tab in tabs.items() if tab is not None}, cache)
    return app


def _side_by_side(gr, families: dict[str, tuple[Tab, FamilyModels]], cache: ModelCache) -> None:
    usable = {f: pair for f, pair in families.items() if not pair[1].missing}
    if not usable:
        gr.HTML(message("no trained model yet: run `make repro` first", "note"))
        return
    gr.Markdown("The same input through two models: LSTM vs GRU, attention vs none.")
    first = next(iter(usable))
    choices = {f: [ref.label for ref in found.models] for f, (_, found) in usable.items()}
    with gr.Row():
        family = gr.Radio([(tab.title, f) for f, (tab, _) in usable.items()], value=first, label="Task",
                          elem_id="side-family")
        a = gr.Dropdown(choices[first], value=choices[first][0], label="Model A", elem_id="side-a")
        b = gr.Dropdown(choices[first], value=choices[first][-1], label="Model B", elem_id="side-b")
    text = gr.Textbox(label="Input", value=usable[first][0].example, elem_id="side-input")
    run = gr.Button("Run both", variant="primary", elem_id="side-run")
    with gr.Row():
        with gr.Column():
            out_a, plot_a = gr.HTML(elem_id="side-out-a"), gr.Plot(label="Model A attention", elem_id="side-plot-a")
        with gr.Column():
            out_b, plot_b = gr.HTML(elem_id="side-out-b"), gr.Plot(label="Model B attention", elem_id="side-plot-b")

    def switch(name):
        return (gr.update(choices=choices[name], value=choices[name][0]),
                gr.update(choices=choices[name], value=choices[name][-1]), usable[name][0].example)

    def both(name, label_a, label_b, sentence):
        tab, found = usable[name]
        outputs = []
        for label in (label_a, label_b):
            body, figure = tab.side_by_side(cache.get(found.find(label)), sentence)
            outputs += [f"<h4>{label}</h4>" + body, figure]
        return tuple(outputs)

    family.change(switch, family, [a, b, text], api_visibility="private")
    run.click(guarded(both, (None, None, "", None), 0), [family, a, b, text], [out_a, plot_a, out_b, plot_b],
              api_name="side_by_side")


def serve(app, host: str, port: int, block: bool = True):
    """Start the page on host:port (a loopback address); returns (app, local URL) when not blocking."""
    host = check_host(host)
    app.queue(default_concurrency_limit=2)  # two requests at a time on the 2 cores; the rest wait their turn
    _, url, _ = app.launch(server_name=host, server_port=int(port), share=False, prevent_thread_lock=not block,
                           quiet=not block, ssr_mode=False, css=CSS, footer_links=["api"], mcp_server=False)
    return app, url
