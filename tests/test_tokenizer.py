from omegaconf import OmegaConf

from rnnlab.config import compose
from rnnlab.data.tokenizer import PAD_ID, UNK_ID, build_tokenizer, encode


def _cfg(**kw):
    cfg = compose().tokenizer
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
