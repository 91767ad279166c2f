"""The translation tab: greedy and beam outputs (the n-best list with scores; beam size and length penalty
adjustable), the attention heatmap of the chosen output, and the unknown words copied from the source marked."""

from __future__ import annotations

from rnnlab.explorer.html import marked_output, message
from rnnlab.explorer.tab import Tab, guarded


def heatmap(source_tokens: list[str], output_tokens: list[str], weights, title: str):
    """The attention of one output (rows: output tokens and <eos>; columns: source tokens) as a figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = [*output_tokens, "<eos>"]
    fig = Figure(figsize=(0.6 * len(source_tokens) + 2.5, 0.4 * len(rows) + 1.6))
    ax = fig.add_subplot()
    ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("source")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def translate_view(translator, text: str, beam: int, length_penalty: float, n_best: int) -> dict:
    """What the tab shows: {"greedy", "n_best" (rows: rank, output, score), "outputs", "source_tokens", "note"}."""
    from rnnlab.tasks.seq2seq.explore import explain

    shown = explain(translator, text, beam=int(beam), length_penalty=float(length_penalty), n_best=int(n_best))
    notes = [shown["warning"]] if shown["warning"] else []
    if translator.model.attention_kind == "none":
        notes.append("this model has no attention: no heatmap, and unknown words cannot be copied (they are "
                     "never produced)")
    rows = [[rank, out["text"], out["score"]] for rank, out in enumerate(shown["beam"], start=1)]
    return {"greedy": shown["greedy"]["text"], "n_best": rows, "outputs": shown["beam"],
            "source_tokens": shown["source_tokens"], "note": " ".join(notes)}


def chosen_output(view: dict, rank: int) -> tuple[str, object]:
    """The marked text and the heatmap (None without attention) of the n-best output `rank` (1 = best)."""
    rank = min(max(int(rank), 1), len(view["outputs"]))
    out = view["outputs"][rank - 1]
    figure = None if out["attention"] is None else heatmap(view["source_tokens"], out["tokens"], out["attention"],
                                                            f"output {rank}: {out['text']}")
    return marked_output(out["tokens"], out["replaced"]), figure


class TranslateTab(Tab):
    family = "seq2seq"
    prefix = "translate"  # element ids: translate-input, translate-run, ...
    title = "Translation"
    loader = "rnnlab.tasks.seq2seq.evaluate:load_translator"
    example = "Tom wants to eat an apple."

    def side_by_side(self, model, text: str):
        d = model.decoding
        view = translate_view(model, text, int(d["beam"]), float(d["length_penalty"]), 1)
        marked, figure = chosen_output(view, 1)
        body = (f"<p>greedy: {view['greedy']}</p><p>beam {int(d['beam'])}:</p>" + marked
                + (message(view["note"], "note") if view["note"] else ""))
        return body, figure

    def build(self, gr, models, cache) -> None:
        from rnnlab.tasks.seq2seq.explore import MAX_BEAM

        labels = [ref.label for ref in models.models]
        with gr.Row():
            text = gr.Textbox(label="English sentence", value=self.example, lines=2, scale=4, elem_id="translate-input")
            choice = gr.Dropdown(labels, value=labels[0], label="Model", scale=2, elem_id="translate-model")
        with gr.Row():
            beam = gr.Slider(1, MAX_BEAM, value=5, step=1, label="Beam size (1 = greedy)", elem_id="translate-beam")
            penalty = gr.Slider(0.0, 2.0, value=0.6, step=0.1, label="Length penalty (GNMT alpha)",
                                elem_id="translate-penalty")
            n_best = gr.Slider(1, MAX_BEAM, value=3, step=1, label="Outputs listed (n-best)", elem_id="translate-nbest")
        run = gr.Button("Translate", variant="primary", elem_id="translate-run")
        status = gr.HTML(elem_id="translate-status")
        greedy = gr.Textbox(label="Greedy output", interactive=False, elem_id="translate-greedy")
        table = gr.Dataframe(headers=["rank", "beam output", "score (log-prob / length penalty)"],
                             label="Beam search: n-best", interactive=False, elem_id="translate-nbest-table")
        rank = gr.Slider(1, MAX_BEAM, value=1, step=1, label="Show the attention of output #", elem_id="translate-rank")
        marked = gr.HTML(elem_id="translate-marked")
        plot = gr.Plot(label="Attention (rows: output words, columns: source words)", elem_id="translate-heatmap")
        state = gr.State(None)

        def answer(sentence, model_label, beam_size, alpha, listed):
            translator = cache.get(models.find(model_label))
            view = translate_view(translator, sentence, beam_size, alpha, min(int(listed), int(beam_size)))
            shown, figure = chosen_output(view, 1)
            note = message(view["note"], "note") if view["note"] else ""
            return note, view["greedy"], view["n_best"], shown, figure, view, 1

        def choose(view, chosen):
            if not view:
                return "", None
            return chosen_output(view, chosen)

        handler = guarded(answer, (None, "", None, "", None, None, 1), 0)
        outputs = [status, greedy, table, marked, plot, state, rank]
        run.click(handler, [text, choice, beam, penalty, n_best], outputs, api_name="translate")
        text.submit(handler, [text, choice, beam, penalty, n_best], outputs, api_visibility="private")
        rank.release(guarded(choose, (None, None), 0), [state, rank], [marked, plot], api_visibility="private")

    def exercise(self, page, text: str) -> dict:
        page.type_and_run(self.prefix, text)
        heatmap = page.wait(f"#{self.prefix}-heatmap img", "the attention heatmap")[0]
        greedy = page.until(lambda: page.value(f"#{self.prefix}-greedy"), "the greedy output")
        return {"greedy": greedy, "n_best": page.find(f"#{self.prefix}-nbest-table").text,
                "heatmap_size": heatmap.size, "marked": page.find(f"#{self.prefix}-marked").text}
