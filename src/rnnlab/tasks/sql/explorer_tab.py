"""The text-to-SQL tab: a question in; the SQL out (the beam's n-best, each marked whether it compiles on the
database), the rows the chosen query returns (read-only, row-limited, with a timeout), and the attention between
the question's words and the SQL tokens."""

from __future__ import annotations

import html

from rnnlab.explorer.html import message
from rnnlab.explorer.tab import Tab, guarded

MAX_BEAM = 10
ROWS_SHOWN = 20


def sql_view(loaded, question: str, beam: int, valid_only: bool) -> dict:
    """What the tab shows for one question: {"sql", "n_best" rows, "columns", "rows", "note", "figure"}."""
    from rnnlab.tasks.seq2seq.explorer_tab import heatmap
    from rnnlab.tasks.sql.evaluate import answer_questions

    answer = answer_questions(loaded, [question], beam=int(beam), valid_only=bool(valid_only),
                              max_rows=ROWS_SHOWN)[0]
    result = answer["result"]
    notes = []
    if result.error:
        notes.append(f"the query fails on the database: {result.error}")
    elif result.truncated:
        notes.append(f"the first {ROWS_SHOWN} rows are shown")
    if valid_only and answer["chosen"] > 0:
        notes.append(f"hypothesis {answer['chosen'] + 1} is shown: the better ones do not compile")
    if not any(h["valid"] for h in answer["n_best"]):
        notes.append("no hypothesis compiles")
    n_best = [[rank, h["sql"], h["score"], "yes" if h["valid"] else "no (invalid)"]
              for rank, h in enumerate(answer["n_best"], start=1)]
    figure = None
    if answer["attention"] is not None:
        figure = heatmap(answer["model_words"], answer["written"], answer["attention"].numpy(),
                         "attention: SQL tokens (rows) x question words")
    return {"sql": answer["sql"], "n_best": n_best, "columns": result.columns or ["(no result)"],
            "rows": [["NULL" if v is None else v for v in row] for row in result.rows] or [["-"] * max(
                len(result.columns), 1)], "note": "; ".join(notes), "figure": figure}


class SqlTab(Tab):
    family = "sql"
    prefix = "sql"  # element ids: sql-input, sql-run, ...
    title = "Text to SQL"
    loader = "rnnlab.tasks.sql.evaluate:load_sql_model"
    example = "how many flights left JFK in March?"

    def side_by_side(self, model, text: str):
        view = sql_view(model, text, int(model.decoding["beam"]), bool(model.decoding.get("valid_only", True)))
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in view["columns"])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                       for row in view["rows"][:5])
        shown = (f"<p><code>{html.escape(view['sql'])}</code></p><table><tr>{head}</tr>{body}</table>"
                 + (message(view["note"], "note") if view["note"] else ""))
        return shown, view["figure"]

    def build(self, gr, models, cache) -> None:
        labels = [ref.label for ref in models.models]
        with gr.Row():
            text = gr.Textbox(label="Question about the NYC flights of 2013", value=self.example, lines=2, scale=4,
                              elem_id="sql-input")
            choice = gr.Dropdown(labels, value=labels[0], label="Model", scale=2, elem_id="sql-model")
        with gr.Row():
            beam = gr.Slider(1, MAX_BEAM, value=5, step=1, label="Beam size (1 = greedy)", elem_id="sql-beam")
            valid = gr.Checkbox(value=True, label="Keep only queries that compile (SQLite EXPLAIN)",
                                elem_id="sql-valid")
        run = gr.Button("Write the SQL", variant="primary", elem_id="sql-run")
        status = gr.HTML(elem_id="sql-status")
        sql = gr.Textbox(label="SQL", interactive=False, elem_id="sql-output")
        table = gr.Dataframe(headers=["rank", "SQL", "score", "compiles"], label="Beam search: n-best",
                             interactive=False, elem_id="sql-nbest")
        result = gr.Dataframe(label=f"Result (read-only, first {ROWS_SHOWN} rows)", interactive=False,
                              elem_id="sql-result")
        plot = gr.Plot(label="Attention (rows: SQL tokens, columns: question words)", elem_id="sql-heatmap")

        def answer(question, model_label, beam_size, valid_only):
            view = sql_view(cache.get(models.find(model_label)), question, beam_size, valid_only)
            rows = gr.update(value=view["rows"], headers=[str(c) for c in view["columns"]])
            note = message(view["note"], "note") if view["note"] else ""
            return note, view["sql"], view["n_best"], rows, view["figure"]

        handler = guarded(answer, (None, "", None, None, None), 0)
        outputs = [status, sql, table, result, plot]
        run.click(handler, [text, choice, beam, valid], outputs, api_name="sql")
        text.submit(handler, [text, choice, beam, valid], outputs, api_visibility="private")

    def exercise(self, page, text: str) -> dict:
        page.type_and_run(self.prefix, text)
        sql = page.until(lambda: page.value(f"#{self.prefix}-output"), "the SQL")
        return {"sql": sql, "n_best": page.find(f"#{self.prefix}-nbest").text,
                "result": page.find(f"#{self.prefix}-result").text}
