"""What the explorer shows for one input (rnnlab.tasks.seq2seq.explore): an untrained model with hand-built
tokenizers, so every rule is checked in milliseconds; the trained path runs in test_train.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rnnlab.errors import DataError
from rnnlab.tasks.seq2seq.evaluate import Translator
from rnnlab.tasks.seq2seq.explore import MAX_BEAM, explain
from rnnlab.tasks.seq2seq.model import Seq2Seq

WORD = {"kind": "word", "lowercase": True, "unicode_normalization": "nfkc", "split_punctuation": True,
        "min_frequency": 1, "max_vocab_size": 100}


def _translator(attention: str = "general", unk_bias: float = 0.0, unknown: str = "copy") -> Translator:
    from rnnlab.data.tokenizer import UNK_ID, build_tokenizer

    source = build_tokenizer(OmegaConf.create(WORD), ["tom likes green tea .", "mary sees the dog ."],
                             sequence_specials=True)
    target = build_tokenizer(OmegaConf.create({**WORD, "lowercase": False}),
                             ["a Tom le gusta el té verde .", "Mary ve el perro ."], sequence_specials=True)
    torch.manual_seed(0)
    model = Seq2Seq(source.get_vocab_size(), target.get_vocab_size(), "gru", src_embedding_dim=8,
                    tgt_embedding_dim=8, hidden_size=16, dropout=0.0, attention=attention).eval()
    with torch.no_grad():
        model.output.bias[UNK_ID] += unk_bias  # unk_bias > 0: a model that writes <unk> everywhere
    info = {"model": {"decoding": {"beam": 3, "length_penalty": 0.6, "max_length": 8, "max_len_a": 1.0,
                                   "max_len_b": 2, "unknown": unknown}},
            "src_vocab_size": source.get_vocab_size(), "max_length": 6,
            "config": {"seq2seq": {"data": {"languages": {"source": "English"}, "source_script": "LATIN"}}}}
    return Translator(model, info, source, target)


def test_outputs_their_scores_and_attention_of_the_chosen_settings():
    translator = _translator(unknown="forbid")
    shown = explain(translator, "Tom likes tea.", beam=3, n_best=3)
    assert shown["source_tokens"] == ["tom", "likes", "tea", "."] and shown["warning"] is None
    assert 2 <= len(shown["beam"]) <= 3
    assert [o["score"] for o in shown["beam"]] == sorted((o["score"] for o in shown["beam"]), reverse=True)
    for output in (shown["greedy"], *shown["beam"]):
        weights = np.asarray(output["attention"])
        assert weights.shape == (len(output["tokens"]) + 1, 4)  # every output step incl. <eos>, every source token
        np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-3)
        assert "<unk>" not in output["tokens"] and output["replaced"] == {}
    # beam 1 is the greedy output; the length penalty changes the ranking only
    assert explain(translator, "Tom likes tea.", beam=1)["beam"] == [shown["greedy"]]
    none = explain(_translator("none"), "Tom likes tea.", beam=2)
    assert none["greedy"]["attention"] is None and none["unknown"] == "forbid"  # copy needs an alignment


def test_unknown_words_are_copied_from_the_most_attended_source_word_and_marked():
    shown = explain(_translator(unk_bias=50.0), "Mary likes tea.", beam=2, n_best=2)
    for output in (shown["greedy"], *shown["beam"]):
        assert output["replaced"], output  # every output step wrote <unk>; each became a source word
        words = ["Mary", "likes", "tea", "."]
        for pos, word in output["replaced"].items():
            assert word == words[int(np.argmax(output["attention"][pos]))]
            assert output["tokens"][pos] == word
        assert "<unk>" not in output["text"]
    kept = explain(_translator(unk_bias=50.0), "Mary likes tea.", beam=2, unknown="keep")
    assert "<unk>" in kept["greedy"]["text"] and kept["greedy"]["replaced"] == {}


@pytest.mark.parametrize("text,kwargs,message", [
    ("", {}, "empty input"),
    ("   \t ", {}, "empty input"),
    ("Привет мир", {}, "outside the Latin script"),
    ("🙂🙂", {}, "none of the words"),
    ("Tom likes tea.", {"beam": 0}, "choose 1 \\(greedy\\) to"),
    ("Tom likes tea.", {"beam": MAX_BEAM + 1}, "choose 1 \\(greedy\\) to"),
    ("Tom likes tea.", {"beam": 2, "n_best": 3}, "holds at most 2"),
    ("Tom likes tea.", {"length_penalty": -1}, "length penalty"),
])
def test_bad_input_is_a_clear_data_error(text, kwargs, message):
    with pytest.raises(DataError, match=message):
        explain(_translator(), text, **kwargs)


def test_a_long_input_is_truncated_with_a_warning():
    shown = explain(_translator(), "tom likes green tea " * 2500)  # 10,000 characters
    assert len(shown["source_tokens"]) == 6 and "reads at most 6" in shown["warning"]
    assert np.asarray(shown["greedy"]["attention"]).shape[1] == 6
