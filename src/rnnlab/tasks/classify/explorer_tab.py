"""The classification tab: the label, the class probabilities and, for attention pooling, each word shaded
by its attention weight; and a word's nearest neighbours by its own (GloVe) vector and, for a model with
contextual features, by its contextual vector in the sentence."""

from __future__ import annotations

import html

from rnnlab.explorer.html import message, shaded_words
from rnnlab.explorer.tab import Tab, guarded


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

    def exercise(self, page, text: str) -> dict:
        page.type_and_run(self.prefix, text)
        words = page.wait(f"#{self.prefix}-shading span.rnnlab-word", "the shaded words")
        return {"label": page.find(f"#{self.prefix}-label").text,
                "words": [(w.text, float(w.get_attribute("data-weight"))) for w in words]}
