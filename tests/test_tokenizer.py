import copy
import functools

from omegaconf import OmegaConf

from rnnlab.config import compose
from rnnlab.data.tokenizer import PAD_ID, UNK_ID, build_tokenizer, encode


@functools.cache
def _composed():
    """The default composition of conf/, once per test process (each test edits a deep copy of a node)."""
    return compose()


def _cfg(**kw):
    cfg = copy.deepcopy(_composed().classify.tokenizer)
    for key, value in kw.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def test_special_tokens_first_and_lowercasing_with_punctuation():
    tok = build_tokenizer(_cfg(), ["Good movie!", "good film.", "Bad movie"])
    vocab = tok.get_vocab()
    assert vocab["<pad>"] == PAD_ID and vocab["<unk>"] == UNK_ID
    assert "good" in vocab and "Good" not in vocab and "!" in vocab
    ids = encode(tok, ["GOOD movie!"], 10)[0]
    assert ids == [vocab["good"], vocab["movie"], vocab["!"]]


def test_unknown_words_truncation_and_empty_text():
    tok = build_tokenizer(_cfg(), ["a b c d"])
    assert encode(tok, ["a zzz b"], 10)[0][1] == UNK_ID
    assert encode(tok, ["a b c d a b"], 3)[0] == encode(tok, ["a b c"], 3)[0]
    assert encode(tok, [""], 5)[0] == [UNK_ID]


def test_min_frequency_and_max_vocab_size():
    texts = ["common common common rare", "common other other"]
    tok = build_tokenizer(_cfg(min_frequency=2), texts)
    assert set(tok.get_vocab()) == {"<pad>", "<unk>", "common", "other"}
    tok = build_tokenizer(_cfg(max_vocab_size=3), texts)
    assert set(tok.get_vocab()) == {"<pad>", "<unk>", "common"}


def test_case_and_punctuation_options():
    tok = build_tokenizer(_cfg(lowercase=False, split_punctuation=False), ["Good! good"])
    assert {"Good!", "good"} <= set(tok.get_vocab())


def test_unicode_normalisation_keeps_accents():
    tok = build_tokenizer(_cfg(), ["café ﬁne"])  # NFKC turns the ligature into 'fi'
    assert "café" in tok.get_vocab() and "fine" in tok.get_vocab()


# --------------------------------------------------------------------------- sequence tokenizers (seq2seq)

import unicodedata  # noqa: E402

import pytest  # noqa: E402

from rnnlab.data.tokenizer import BOS_ID, EOS_ID, detokenize  # noqa: E402
from rnnlab.errors import ConfigError  # noqa: E402

SPANISH = ["¿Te gusta este jardín?", "¡Hola, amigo!", "Él no está aquí.", "¿Qué hora es?", "Tom comió pan."]


def _seq_cfg(side="target", **kw):
    cfg = copy.deepcopy(_composed().seq2seq.tokenizer[side])
    for key, value in kw.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_sequence_specials_take_ids_0_to_3(kind):
    tok = build_tokenizer(_seq_cfg(kind=kind), SPANISH, sequence_specials=True)
    assert [tok.token_to_id(t) for t in ("<pad>", "<unk>", "<bos>", "<eos>")] == [PAD_ID, UNK_ID, BOS_ID, EOS_ID]
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert min(i for ids in encode(tok, SPANISH, 40) for i in ids) > EOS_ID
    plain = build_tokenizer(_seq_cfg(kind=kind), SPANISH)
    assert plain.token_to_id("<bos>") is None and plain.token_to_id("<eos>") is None


def test_word_level_detokenize_round_trips_cased_spanish():
    cfg = _seq_cfg(kind="word", lowercase=False, unicode_normalization="nfc")
    tok = build_tokenizer(cfg, SPANISH, sequence_specials=True)
    assert "Te" in tok.get_vocab() and "te" not in tok.get_vocab() and "¿" in tok.get_vocab()
    for text in SPANISH:
        ids = encode(tok, [text], 40)[0]
        assert UNK_ID not in ids
        assert detokenize(tok, [BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == text
    decomposed = unicodedata.normalize("NFD", "¿Te gusta este jardín?")
    assert detokenize(tok, encode(tok, [decomposed], 40)[0]) == "¿Te gusta este jardín?"


def test_bpe_detokenize_is_exact():
    tok = build_tokenizer(_seq_cfg(kind="bpe"), SPANISH, sequence_specials=True)
    for text in [*SPANISH, "¿Te gusta, amigo?", "¡Él comió este pan!"]:
        ids = encode(tok, [text], 40)[0]
        assert UNK_ID not in ids
        assert detokenize(tok, [BOS_ID, *ids, EOS_ID, PAD_ID]) == text


def test_unknown_tokenizer_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="tokenizer.kind='char' is not supported"):
        build_tokenizer(_seq_cfg(kind="char"), SPANISH, sequence_specials=True)
