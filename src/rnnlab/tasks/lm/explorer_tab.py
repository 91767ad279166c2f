"""The language-model tab: a prompt's most likely next words as bars, and sampled continuations with
adjustable temperature, top-k and seed."""

from __future__ import annotations

from rnnlab.explorer.tab import Tab, guarded


def lm_view(model, prompt: str, listed: int = 10, words: int = 20, temperature: float = 1.0, top_k: int = 0,
            seed: int = 0) -> dict:
    """What the tab shows: {"next_words": {word: probability}, "continuation": text}."""
    from rnnlab.tasks.lm.evaluate import generate, next_words

    ranked = next_words(model, prompt, int(listed))
    text = generate(model, prompt, int(words), float(temperature), int(top_k), 1.0, int(seed))
    return {"next_words": dict(ranked), "continuation": text}


class LanguageModelTab(Tab):
    family = "lm"
    prefix = "lm"  # element ids: lm-input, lm-run, ...
    title = "Next word"
    loader = "rnnlab.tasks.lm.evaluate:load_lm"
    example = "the history of the"

    def side_by_side(self, model, text: str):
        view = lm_view(model, text, 5, 20, 0.8, 50, 0)
        ranked = ", ".join(f"{w} {p:.3f}" for w, p in view["next_words"].items())
        return f"<p>next: {ranked}</p><p>sampled: {view['continuation']}</p>", None

    def build(self, gr, models, cache) -> None:
        labels = [ref.label for ref in models.models]
        with gr.Row():
            text = gr.Textbox(label="Prompt (WikiText spacing: punctuation split off)", value=self.example, lines=2,
                              scale=4, elem_id="lm-input")
            choice = gr.Dropdown(labels, value=labels[0], label="Model", scale=2, elem_id="lm-model")
        with gr.Row():
            listed = gr.Slider(1, 20, value=10, step=1, label="Next words listed", elem_id="lm-listed")
            words = gr.Slider(1, 100, value=30, step=1, label="Words to sample", elem_id="lm-words")
            temperature = gr.Slider(0.1, 2.0, value=0.8, step=0.05, label="Temperature", elem_id="lm-temperature")
            top_k = gr.Slider(0, 200, value=50, step=1, label="Sample among the top k (0 = all)", elem_id="lm-topk")
            seed = gr.Number(value=0, precision=0, label="Seed", elem_id="lm-seed")
        run = gr.Button("Predict", variant="primary", elem_id="lm-run")
        status = gr.HTML(elem_id="lm-status")
        label = gr.Label(label="Next word probabilities", elem_id="lm-label")
        continuation = gr.Textbox(label="Sampled continuation", interactive=False, lines=4, elem_id="lm-continuation")

        def answer(prompt, model_label, n_listed, n_words, temp, k, sample_seed):
            view = lm_view(cache.get(models.find(model_label)), prompt, n_listed, n_words, temp, k, sample_seed or 0)
            return "", view["next_words"], view["continuation"]

        handler = guarded(answer, (None, None, ""), 0)
        inputs = [text, choice, listed, words, temperature, top_k, seed]
        run.click(handler, inputs, [status, label, continuation], api_name="next_word")  # also an API route
        text.submit(handler, inputs, [status, label, continuation], api_visibility="private")

    def exercise(self, page, text: str) -> dict:
        page.type_and_run(self.prefix, text)
        continuation = page.until(lambda: page.value(f"#{self.prefix}-continuation"), "the sampled continuation")
        return {"label": page.find(f"#{self.prefix}-label").text, "continuation": continuation}
