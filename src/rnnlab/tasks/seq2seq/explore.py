"""What the explorer's translation tab shows for one input: greedy and beam outputs (the n-best list with
scores), each output's attention over the source tokens, and the unknown words replaced from the source.
Plain data (lists, dicts), so the page, a test or a notebook can use it without a browser."""

from __future__ import annotations

import numpy as np
import torch

from rnnlab.errors import DataError
from rnnlab.tasks.seq2seq.evaluate import (Translator, prepare_input, source_words, unknown_policy,
                                           unknown_replacements)

MAX_BEAM = 16  # the page's slider; larger beams cost time and rarely change the output


def _output(translator: Translator, tokens: list[int], score: float, attention, words: list[str], policy: str,
            n_source: int) -> dict:
    """One decoded output: its text, its tokens (replacements marked), the replacements and its attention."""
    from rnnlab.data.tokenizer import detokenize

    weights = None if attention is None else np.asarray(attention, dtype=float)[:, :n_source]
    replaced = unknown_replacements(tokens, weights, words) if policy == "copy" and weights is not None else {}
    target = translator.target_tokenizer
    return {
        "text": detokenize(target, tokens, replaced),
        "score": round(float(score), 4),
        "tokens": [replaced.get(pos, target.id_to_token(i)) for pos, i in enumerate(tokens)],
        "replaced": {int(pos): word for pos, word in replaced.items()},  # output position -> source word
        "attention": None if weights is None else weights.round(4).tolist(),  # (len(tokens) + 1, source)
    }


@torch.no_grad()
def explain(translator: Translator, text: str, beam: int | None = None, length_penalty: float | None = None,
            n_best: int = 1, unknown: str | None = None) -> dict:
    """Greedy and beam decoding of `text` with the model's settings unless given. Returns {"source_tokens",
    "greedy": output, "beam": [output, ...] best first (n_best of them), "warning", "unknown"}; an output is
    {"text", "score", "tokens", "replaced", "attention"}. Bad input raises DataError (prepare_input's rules)."""
    from rnnlab.data.tokenizer import BOS_ID, EOS_ID, UNK_ID
    from rnnlab.tasks.seq2seq.decoding import beam_search, greedy_decode

    d = translator.decoding
    beam = int(d["beam"]) if beam is None else int(beam)
    length_penalty = float(d["length_penalty"]) if length_penalty is None else float(length_penalty)
    if not 1 <= beam <= MAX_BEAM:
        raise DataError(f"beam size {beam}: choose 1 (greedy) to {MAX_BEAM}")
    if not 0.0 <= length_penalty <= 10.0:
        raise DataError(f"length penalty {length_penalty}: choose 0 (none) to 10")
    if not 1 <= int(n_best) <= beam:
        raise DataError(f"{n_best} outputs requested with beam size {beam}: a beam of {beam} holds at most {beam}")
    ids, warning = prepare_input(translator, text)
    policy = unknown_policy(translator, unknown)
    attention = translator.model.attention_kind != "none"
    src, lengths = torch.tensor([ids]), torch.tensor([len(ids)])
    common = dict(max_length=int(d["max_length"]), max_len_a=float(d["max_len_a"]), max_len_b=int(d["max_len_b"]),
                  return_attention=attention, banned=UNK_ID if policy == "forbid" else None)
    words = source_words(translator, text)[: len(ids)]

    def output(tokens, score, weights):
        return _output(translator, tokens, score, weights, words, policy, len(ids))

    greedy = greedy_decode(translator.model, src, lengths, BOS_ID, EOS_ID, **common)
    greedy_out = output(greedy.tokens[0], greedy.scores[0], greedy.attention[0] if greedy.attention else None)
    if beam == 1:
        outputs = [greedy_out]
    else:
        found = beam_search(translator.model, src, lengths, BOS_ID, EOS_ID, beam=beam, length_penalty=length_penalty,
                            n_best=int(n_best), **common)
        outputs = [output(h.tokens, h.score, h.attention) for h in found.n_best[0]] if found.n_best else \
            [output(found.tokens[0], found.scores[0], found.attention[0] if found.attention else None)]
    return {"source_tokens": [translator.source_tokenizer.id_to_token(i) for i in ids], "greedy": greedy_out,
            "beam": outputs, "warning": warning, "unknown": policy}
