"""The tagging tab: the sentence with its entities highlighted by type, and each token's tag probabilities
(CRF marginals or the softmax) in a table (and on hover over the token)."""

from __future__ import annotations

import html

from rnnlab.explorer.html import message
from rnnlab.explorer.tab import Tab, guarded

# one colour per entity type, by its rank among the model's types
COLOURS = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fecaca", "#ddd6fe", "#fbcfe8", "#c7d2fe", "#fed7aa", "#a5f3fc",
           "#d9f99d")


def _top(probabilities: dict[str, float], k: int = 3) -> list[tuple[str, float]]:
    return sorted(probabilities.items(), key=lambda kv: -kv[1])[:k]


def entities_html(result: dict, tag_names: list[str]) -> str:
    """The tokens, entity spans wrapped in <mark data-type=...> coloured by type; every token's title lists its
    three most likely tags."""
    types = sorted({t[2:] for t in tag_names if t != "O"})
    starts = {a: (kind, b) for kind, a, b, _ in result["entities"]}
    parts, i, tokens = [], 0, result["tokens"]

    def token(j: int) -> str:
        tip = ", ".join(f"{tag} {p:.2f}" for tag, p in _top(result["probabilities"][j]))
        return f'<span class="rnnlab-token" title="{html.escape(tip)}">{html.escape(tokens[j])}</span>'

    while i < len(tokens):
        if i in starts:
            kind, last = starts[i]
            colour = COLOURS[types.index(kind) % len(COLOURS)] if kind in types else "#e5e7eb"
            inner = " ".join(token(j) for j in range(i, last + 1))
            parts.append(f'<mark class="rnnlab-entity" data-type="{html.escape(kind)}" '
                         f'style="background:{colour};padding:0 3px;border-radius:3px">{inner} '
                         f"<small><b>{html.escape(kind)}</b></small></mark>")
            i = last + 1
        else:
            parts.append(token(i))
            i += 1
    return f'<p class="rnnlab-tagged" style="line-height:2">{" ".join(parts)}</p>'


def probabilities_html(result: dict) -> str:
    rows = "".join(
        f"<tr><td>{j}</td><td>{html.escape(w)}</td><td><b>{html.escape(tag)}</b></td><td>"
        + ", ".join(f"{html.escape(t)} {p:.3f}" for t, p in _top(probs)) + "</td></tr>"
        for j, (w, tag, probs) in enumerate(zip(result["tokens"], result["tags"], result["probabilities"])))
    return ('<table id="ner-probabilities"><tr><th>#</th><th>token</th><th>tag</th><th>most likely tags '
            f"(probability)</th></tr>{rows}</table>")


def ner_view(model, text: str) -> dict:
    """What the tab shows for `text`: {"entities" (HTML), "table" (HTML), "result", "note"}."""
    from rnnlab.tasks.ner.evaluate import tag_texts

    result = tag_texts(model, [text])[0]
    kind = "CRF marginals" if model.info["model"]["output"] == "crf" else "softmax"
    note = f"tag probabilities: {kind}"
    if result["unknown"]:
        note += f"; outside the vocabulary (spelling only): {', '.join(result['unknown'])}"
    return {"entities": entities_html(result, model.info["tag_names"]), "table": probabilities_html(result),
            "result": result, "note": note}


class NerTab(Tab):
    family = "ner"
    prefix = "ner"  # element ids: ner-input, ner-run, ...
    title = "Entities"
    loader = "rnnlab.tasks.ner.evaluate:load_tagger"
    example = "Going to Paris with Ana tomorrow to see the Eiffel Tower"

    def side_by_side(self, model, text: str):
        return ner_view(model, text)["entities"], None

    def build(self, gr, models, cache) -> None:
        labels = [ref.label for ref in models.models]
        with gr.Row():
            text = gr.Textbox(label="Sentence (a tweet, say)", value=self.example, lines=2, scale=4,
                              elem_id="ner-input")
            choice = gr.Dropdown(labels, value=labels[0], label="Model", scale=2, elem_id="ner-model")
        run = gr.Button("Tag", variant="primary", elem_id="ner-run")
        status = gr.HTML(elem_id="ner-status")
        entities = gr.HTML(label="Entities", elem_id="ner-entities")
        table = gr.HTML(label="Tag probabilities per token", elem_id="ner-table")

        def answer(sentence: str, model_label: str):
            view = ner_view(cache.get(models.find(model_label)), sentence)
            return message(view["note"], "note"), view["entities"], view["table"]

        handler = guarded(answer, ("", "", ""), 0)
        run.click(handler, [text, choice], [status, entities, table], api_name="entities")  # also an API route
        text.submit(handler, [text, choice], [status, entities, table], api_visibility="private")

    def exercise(self, page, text: str) -> dict:
        page.type_and_run(self.prefix, text)
        tokens = page.wait(f"#{self.prefix}-entities span.rnnlab-token", "the tagged tokens")
        rows = page.wait("#ner-probabilities tr", "the tag probabilities", count=len(tokens) + 1)
        marks = page.driver.find_elements("css selector", f"#{self.prefix}-entities mark.rnnlab-entity")
        return {"tokens": [t.text for t in tokens], "entities": [m.get_attribute("data-type") for m in marks],
                "rows": [r.text for r in rows[1:]]}
