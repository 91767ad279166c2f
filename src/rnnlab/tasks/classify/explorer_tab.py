"""The classification tab: the label, the class probabilities and, for attention pooling, each word shaded
by its attention weight; a word's nearest neighbours by its own (GloVe) vector and, for a model with
contextual features, by its contextual vector in the sentence; and, for an LSTM or GRU model, each gate's
values over the words of the sentence (a heatmap per layer and direction, and a table of the means)."""

from __future__ import annotations

import html

from rnnlab.errors import DataError
from rnnlab.explorer.html import message, shaded_words
from rnnlab.explorer.tab import Tab, guarded

GATED_CELLS = ("lstm", "gru")  # the cells with gates (rnnlab.models.cells.GATE_NAMES)


def classify_view(model, text: str) -> dict:
    """What the tab shows for `text`: {"label", "probabilities", "shading" (HTML or None), "note"}."""
    from rnnlab.tasks.classify.evaluate import classify_texts

    result = classify_texts(model, [text])[0]
    shading = shaded_words(result["attention"]) if result["attention"] is not None else None
    notes = [result["warning"]] if result["warning"] else []
    if shading is None:
        notes.append(f"this model pools with `{model.info['model']['pooling']}`, not attention: no word weights")
    return {"label": result["label"], "probabilities": result["probabilities"], "shading": shading,
            "note": " ".join(notes)}


def neighbours_html(view: dict) -> str:
    """Two tables: neighbours by the word's own vector, and by its contextual vector in this sentence."""
    static = "".join(f"<tr><td>{html.escape(w)}</td><td>{c:.3f}</td></tr>" for w, c in view["static"])
    parts = [f'<div class="rnnlab-neighbours"><h4>Nearest words to &ldquo;{html.escape(view["word"])}&rdquo; by '
             "its own vector (the same in every sentence)</h4>",
             f'<table id="classify-neighbours-static"><tr><th>word</th><th>cosine</th></tr>{static}</table>']
    if view["contextual"] is None:
        parts.append(message("this model has no contextual features (classify.model.contextual=none): its word "
                             "vectors do not depend on the sentence", "note"))
    else:
        rows = "".join(f"<tr><td>{html.escape(w)}</td><td>{html.escape(s)}</td><td>{c:.3f}</td></tr>"
                       for w, s, c in view["contextual"])
        parts += ["<h4>Nearest occurrences by its contextual vector in this sentence</h4>",
                  '<table id="classify-neighbours-contextual"><tr><th>word</th><th>in the sentence</th>'
                  f"<th>cosine</th></tr>{rows}</table>"]
    return "".join(parts) + "</div>"


def gated_labels(models) -> list[str]:
    """The labels of `models` (FamilyModels) whose encoder is an LSTM or a GRU, from each folder's model.json
    (nothing loaded); a folder whose model.json cannot be read is left out."""
    from rnnlab.io import read_json

    labels = []
    for ref in models.models:
        try:
            model = read_json(ref.path / "model.json").get("model") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if model.get("cell") in GATED_CELLS and model.get("encoder", "recurrent") == "recurrent":
            labels.append(ref.label)
    return labels


def gates_table(view: dict) -> str:
    """The mean of each gate over its units at each word (`sentence_gates`' view) as an HTML table: a row per
    gate, layer and direction, a column per word; each cell's exact mean in `data-value`, shaded by it."""
    words = view["words"]
    head = "".join(f'<th class="rnnlab-gate-word">{html.escape(w)}</th>' for w in words)
    rows = []
    for entry in view["layers"]:
        for gate, values in entry["gates"].items():
            cells = "".join(f'<td data-value="{m:.6f}" style="background: rgba(33, 145, 140, {m:.2f}); '
                            f'text-align: right">{m:.2f}</td>' for m in values.mean(1))
            rows.append(f'<tr data-gate="{gate}" data-layer="{entry["layer"]}" data-direction="{entry["direction"]}">'
                        f"<td>{gate}</td><td>{entry['layer']}</td><td>{entry['direction']}</td>{cells}</tr>")
    units = view["layers"][0]["gates"][next(iter(view["layers"][0]["gates"]))].shape[1]
    return (f'<div style="overflow-x: auto"><table class="rnnlab-gates" style="font-size: 0.85em"><caption>Mean of '
            f"each gate over its {units} units at each word (0 closed, 1 open)</caption><thead><tr><th>gate</th>"
            f"<th>layer</th><th>direction</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def gates_answer(loaded, text: str) -> tuple[str, object, str]:
    """What the gates section shows for `text` with a loaded Classifier: (a note or "", the heatmaps, the table
    of means). An RNN-cell model, an empty text or one without a known word: a DataError."""
    from rnnlab.data.tokenizer import UNK
    from rnnlab.tasks.classify.gates import gates_figure, sentence_gates

    view = sentence_gates(loaded, text)
    notes = []
    total = len(loaded.tokenizer.encode(text.strip(), add_special_tokens=False).ids)
    if total > len(view["words"]):
        notes.append(f"the input has {total} tokens; the model reads at most {len(view['words'])}: the gates of "
                     "the first ones")
    unknown = sum(w == UNK for w in view["words"])
    if unknown:
        notes.append(f"{unknown} word(s) not in the model's vocabulary, shown as {UNK}")
    return (message("; ".join(notes), "note") if notes else ""), gates_figure(view), gates_table(view)


class ClassifyTab(Tab):
    family = "classify"
    prefix = "classify"  # element ids: classify-input, classify-run, ...
    title = "Classification"
    loader = "rnnlab.tasks.classify.evaluate:load_classifier"
    example = "a gripping, beautifully shot film"

    def side_by_side(self, model, text: str):
        view = classify_view(model, text)
        probs = ", ".join(f"{name} {p:.3f}" for name, p in view["probabilities"].items())
        body = f"<p><b>{view['label']}</b> ({probs})</p>" + (view["shading"] or message(view["note"], "note"))
        return body, None

    def build(self, gr, models, cache) -> None:
        labels = [ref.label for ref in models.models]
        with gr.Row():
            text = gr.Textbox(label="Sentence", value=self.example, lines=2, scale=4, elem_id="classify-input")
            choice = gr.Dropdown(labels, value=labels[0], label="Model", scale=2, elem_id="classify-model")
        run = gr.Button("Classify", variant="primary", elem_id="classify-run")
        status = gr.HTML(elem_id="classify-status")
        label = gr.Label(label="Class probabilities", elem_id="classify-label")
        shading = gr.HTML(label="Attention over the words", elem_id="classify-shading")

        def answer(sentence: str, model_label: str):
            view = classify_view(cache.get(models.find(model_label)), sentence)
            return (message(view["note"], "note") if view["note"] else "", view["probabilities"],
                    view["shading"] or "")

        handler = guarded(answer, (None, None, ""), 0)
        run.click(handler, [text, choice], [status, label, shading], api_name="classify")  # also an API route
        text.submit(handler, [text, choice], [status, label, shading], api_visibility="private")

        with gr.Row():
            word = gr.Textbox(label="A word of the sentence (e.g. bank in \"the river bank\")", scale=4,
                              elem_id="classify-word")
            near = gr.Button("Nearest neighbours", scale=1, elem_id="classify-neighbours-run")
        near_status = gr.HTML(elem_id="classify-neighbours-status")
        table = gr.HTML(elem_id="classify-neighbours")

        def neighbours(sentence: str, chosen: str, model_label: str):
            from rnnlab.tasks.classify.evaluate import word_neighbours

            return "", neighbours_html(word_neighbours(cache.get(models.find(model_label)), sentence, chosen))

        near_handler = guarded(neighbours, ("", ""), 0)
        near.click(near_handler, [text, word, choice], [near_status, table], api_name="neighbours")

        self._build_gates(gr, models, cache, text)

    def _build_gates(self, gr, models, cache, text) -> None:
        """The gates section: the tab's sentence through an LSTM or GRU model, each gate over the words."""
        from rnnlab.tasks.classify.gates import GATE_MEANING

        gated = gated_labels(models)
        with gr.Accordion("Gates: each gate's values over the words (LSTM and GRU models)", open=False,
                          elem_id="classify-gates"):
            gr.Markdown("The sentence above through the model's cells: for each layer and direction, every gate's "
                        "value (0 closed, 1 open) for each hidden unit at each word, and its mean over the units. "
                        + "; ".join(f"**{gate}**: {meaning}" for gate, meaning in GATE_MEANING.items()) + ".")
            with gr.Row():
                choice = gr.Dropdown(gated, value=gated[0] if gated else None, label="LSTM or GRU model", scale=3,
                                     elem_id="classify-gates-model")
                run = gr.Button("Show the gates", scale=1, elem_id="classify-gates-run")
            none = ("none of the classification models has gates (their cells are plain RNNs or a bag of words): "
                    "train an LSTM or GRU model (classify.model.cell=lstm or gru) to see them")
            status = gr.HTML(message(none, "note") if not gated else "", elem_id="classify-gates-status")
            plot = gr.Plot(label="Gates over the words", elem_id="classify-gates-plot")
            means = gr.HTML(elem_id="classify-gates-table")

        def gates(sentence: str, model_label: str | None):
            if not model_label:
                raise DataError(none if not gated else "pick an LSTM or GRU model")
            return gates_answer(cache.get(models.find(model_label)), sentence)

        run.click(guarded(gates, ("", None, ""), 0), [text, choice], [status, plot, means], api_name="gates")

    def exercise(self, page, text: str) -> dict:
        page.type_and_run(self.prefix, text)
        words = page.wait(f"#{self.prefix}-shading span.rnnlab-word", "the shaded words")
        facts = {"label": page.find(f"#{self.prefix}-label").text,
                 "words": [(w.text, float(w.get_attribute("data-weight"))) for w in words]}
        facts["gates"] = self.exercise_gates(page)
        page.driver.execute_script("window.scrollTo(0, 0)")  # the tab's screenshot shows its top, as before
        return facts

    def exercise_gates(self, page) -> dict:
        """Open the gates section, press its button (the sentence in the tab's box, the section's first model)
        and read what it shows: {"words": the table's columns, "rows": [{"gate", "layer", "direction", "means":
        per word}], "plot": the heatmap's size, "screenshot"}; or {"message": ...} when the page answers with
        one (no LSTM or GRU model)."""
        from selenium.webdriver.common.by import By

        prefix = self.prefix
        if not page.driver.find_elements(By.CSS_SELECTOR, f"#{prefix}-gates-run"):  # closed: content not drawn yet
            page.wait(f"#{prefix}-gates button.label-wrap", "the gates section")[0].click()
        page.wait(f"#{prefix}-gates-run", "the gates button")[0].click()
        shown = page.wait(f"#{prefix}-gates-table tr[data-gate], #{prefix}-gates-status .rnnlab-error",
                          "the table of gate means or a message")
        if shown[0].tag_name != "tr":
            return {"message": shown[0].text}
        plot = page.wait(f"#{prefix}-gates-plot img", "the gates heatmap")[0]
        page.driver.execute_script("arguments[0].scrollIntoView()", plot)
        words = page.driver.find_elements(By.CSS_SELECTOR, f"#{prefix}-gates-table th.rnnlab-gate-word")
        rows = [{"gate": r.get_attribute("data-gate"), "layer": int(r.get_attribute("data-layer")),
                 "direction": r.get_attribute("data-direction"),
                 "means": [float(c.get_attribute("data-value"))
                           for c in r.find_elements(By.CSS_SELECTOR, "td[data-value]")]} for r in shown]
        return {"words": [w.text for w in words], "rows": rows, "plot": plot.size,
                "screenshot": page.shot(f"explorer-{self.family}-gates.png")}
