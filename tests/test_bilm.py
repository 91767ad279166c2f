"""The ELMo-style biLM (rnnlab.models.bilm) and contextual features in the classifier: no direction sees the
word it predicts, padding changes nothing, "bank" depends on its sentence with the features and not without
them, the scalar mix is a distribution, the biLM stays frozen, and the pipeline end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rnnlab.errors import ConfigError
from rnnlab.models.bilm import BiLM, ContextualFeatures, ScalarMix, reverse_padded

H = 6


def _bilm(vocab: int = 12) -> BiLM:
    torch.manual_seed(0)
    return BiLM(vocab, 5, H, num_layers=2, cell="lstm", output_layer="full", embedding_mode="random").eval()


def test_reverse_padded_reverses_each_sentence_within_its_length():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    assert reverse_padded(x, torch.tensor([3, 2])).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0]]
    y = torch.arange(16.).view(2, 4, 2)
    assert torch.equal(reverse_padded(reverse_padded(y, torch.tensor([4, 3])), torch.tensor([4, 3])), y)


@pytest.mark.parametrize("changed", [0, 2, 4])
def test_neither_direction_sees_the_words_on_its_other_side(changed):
    """Changing word j changes the forward features only at positions >= j and the backward features only at
    positions <= j, in every layer: the forward LM at t (predicting t+1) has read 1..t, the backward LM at t
    (predicting t-1) has read t..n, so neither has seen the word it predicts."""
    model = _bilm()
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    other = ids.clone()
    other[0, changed] = 9
    lengths = torch.tensor([5])
    with torch.no_grad():
        a, b = model.layers(ids, lengths), model.layers(other, lengths)
    differs = (a - b).abs().amax(-1)[1:, 0] > 0  # (layers, time), layer 0 (the token layer) left out
    forward = (a - b)[1:, 0, :, :H].abs().amax(-1) > 0
    backward = (a - b)[1:, 0, :, H:].abs().amax(-1) > 0
    positions = torch.arange(5)
    assert torch.equal(forward, (positions >= changed).expand_as(forward))
    assert torch.equal(backward, (positions <= changed).expand_as(backward))
    assert differs.any()


def test_training_windows_predict_the_next_word_forwards_and_the_previous_one_backwards():
    """In a training window, the loss of position t forwards does not depend on the word it predicts (t+1)
    and backwards (on the reversed stream) likewise: the gradient of that loss reaches no embedding of it."""
    model = _bilm()
    stream = torch.tensor([[2, 3, 4, 5, 6, 7, 8]])
    reverse = stream.flip(1)
    batch = {"ids": stream[:, :-1], "targets": stream[:, 1:], "ids_bwd": reverse[:, :-1], "targets_bwd": reverse[:, 1:]}
    nll, _ = model.window_nll(batch, None)
    for position, predicted in ((2, 5), (6 + 2, 4)):  # forward position 2 -> word 5; backward row 2 -> word 4
        model.zero_grad()
        nll[position].backward(retain_graph=True)
        grad = model.embedding.weight.grad
        assert float(grad[predicted].abs().sum()) == 0.0, predicted
        assert float(grad.abs().sum()) > 0.0


def test_padding_changes_no_feature_of_a_real_word():
    model = _bilm()
    with torch.no_grad():
        alone = model.layers(torch.tensor([[3, 4, 5]]), torch.tensor([3]))
        padded = model.layers(torch.tensor([[3, 4, 5, 0, 0], [6, 7, 8, 9, 10]]), torch.tensor([3, 5]))
    assert torch.allclose(alone[:, 0], padded[:, 0, :3], atol=1e-6)


def test_the_scalar_mix_is_a_softmax_weighting_scaled_by_gamma():
    mix = ScalarMix(3)
    with torch.no_grad():
        mix.weights.copy_(torch.tensor([0.3, -1.0, 2.0]))
        mix.gamma.fill_(2.0)
    assert float(mix.normalized().detach().sum()) == pytest.approx(1.0)
    layers = torch.randn(3, 2, 4, 5)
    expected = 2.0 * sum(w * layer for w, layer in zip(torch.softmax(mix.weights, 0), layers))
    assert torch.allclose(mix(layers), expected)


def _biLM_folder(tmp_path, vec_path, words_path, token_layer: str = "word") -> tuple:
    """A trained-looking biLM folder (random weights) whose token layer is the tiny GloVe (and/or a small
    character CNN)."""
    words = words_path.read_text().split()
    vocab = ["<unk>", "<eos>", *words]
    glove = np.load(vec_path)
    table = np.zeros((len(vocab), glove.shape[1]), np.float32)
    table[2:] = glove
    torch.manual_seed(1)
    chars = {"char_dim": 4, "char_filters": [[1, 3], [2, 5]], "char_highway": 1, "max_word_chars": 8}
    model = BiLM(len(vocab), glove.shape[1], H, 2, "lstm", 0.0, True, "full", None, table, "frozen", token_layer,
                 chars, vocab).eval()
    folder = tmp_path / "bilm"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "model.pt")
    cfg = {"cell": "lstm", "hidden_size": H, "num_layers": 2, "residual": True, "bidirectional": True,
           "output_layer": "full", "dropout": 0.0, "embedding_mode": "frozen", "embedding_dim": glove.shape[1],
           "token_layer": token_layer, **chars}
    emb = {"name": "tiny", "source": "local", "local": {"vectors": str(vec_path), "words": str(words_path)},
           "oov_init_seed": 0}
    (folder / "model.json").write_text(json.dumps({"family": "lm", "model": cfg, "vocab_size": len(vocab),
                                                   "embedding_dim": glove.shape[1], "token_embeddings": emb}))
    return folder, model


def test_bank_depends_on_its_sentence_with_contextual_features_and_not_without(tmp_path):
    from conftest import write_tiny_glove
    from rnnlab.models.bilm import contextual_for_vocabulary
    from rnnlab.tasks.classify.model import TextClassifier

    vec_path, words_path = write_tiny_glove(tmp_path)
    folder, bilm = _biLM_folder(tmp_path, vec_path, words_path)
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "the", "river", "bank", "approved", "loan", "movie"])}
    features, record = contextual_for_vocabulary(folder, vocab, dropout=0.0)
    assert record["token_dim"] == 8 and record["vocab_found"] == 2  # "the" and "movie" of the tiny GloVe
    # words GloVe knows get their GloVe row, others the biLM's <unk> row
    glove_rows = dict(zip(words_path.read_text().split(), np.load(vec_path)))
    assert np.allclose(features.vectors[vocab["movie"]].numpy(), glove_rows["movie"])
    assert torch.equal(features.vectors[vocab["bank"]], bilm.embedding.weight[0])
    classifier = TextClassifier(len(vocab), 4, 2, hidden_size=3, pooling="mean", embedding_mode="random",
                                contextual=features).eval()
    river = torch.tensor([[vocab[w] for w in "the river bank".split()]])
    loan = torch.tensor([[vocab[w] for w in "the bank approved the loan".split()]])
    with torch.no_grad():
        contextual = [features(ids, torch.tensor([ids.size(1)])) for ids in (river, loan)]
        words = [classifier.embedding(ids) for ids in (river, loan)]
    bank_river, bank_loan = contextual[0][0, 2], contextual[1][0, 1]
    assert not torch.allclose(bank_river, bank_loan)
    assert torch.equal(words[0][0, 2], words[1][0, 1])  # the GloVe (word) vector alone is the same


def test_the_bilm_stays_frozen_while_the_classifier_and_the_mix_train(tmp_path):
    from conftest import write_tiny_glove
    from rnnlab.models.bilm import contextual_for_vocabulary
    from rnnlab.tasks.classify.model import TextClassifier
    from rnnlab.training.optim import configure_optimizers

    vec_path, words_path = write_tiny_glove(tmp_path)
    folder, _ = _biLM_folder(tmp_path, vec_path, words_path)
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "the", "movie", "good", "bad"])}
    features, _ = contextual_for_vocabulary(folder, vocab, dropout=0.5)
    classifier = TextClassifier(len(vocab), 4, 2, hidden_size=3, pooling="mean", embedding_mode="random",
                                contextual=features, dropout=0.2).train()
    assert not features.bilm.training  # eval mode inside a training model: no dropout in the biLM
    frozen = {k: v.clone() for k, v in features.bilm.state_dict().items()}
    mix = features.mix.weights.detach().clone()
    optimizer = configure_optimizers(classifier, "embedding.", {"lr": 0.05, "embedding_lr": 0.05,
                                                                 "weight_decay": 0.01}, trainer=None)
    ids = torch.tensor([[2, 3, 4], [2, 3, 5]])
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(classifier(ids, torch.tensor([3, 3])), torch.tensor([1, 0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(frozen[k], v) for k, v in features.bilm.state_dict().items())
    assert all(not p.requires_grad for p in features.bilm.parameters())
    assert not torch.equal(mix, features.mix.weights.detach())


def test_an_encoder_folder_that_is_not_a_bilm_is_a_clear_error(tmp_path):
    from rnnlab.models.bilm import contextual_for_vocabulary

    with pytest.raises(ConfigError, match=r"no trained biLM there.*dvc repro lm_bilm"):
        contextual_for_vocabulary(tmp_path / "missing", {"<pad>": 0}, 0.5)
    (tmp_path / "lm").mkdir()
    (tmp_path / "lm/model.json").write_text(json.dumps({"family": "lm", "model": {"cell": "lstm"}}))
    with pytest.raises(ConfigError, match=r"not a biLM"):
        contextual_for_vocabulary(tmp_path / "lm", {"<pad>": 0}, 0.5)


@pytest.mark.slow
@pytest.mark.cost(25)
@pytest.mark.timeout(300)
def test_a_tiny_bilm_then_a_classifier_with_its_features_end_to_end(tiny_project, monkeypatch):
    """The lm_bilm stage's training on the tiny corpus, then a classifier with classify.model.contextual=elmo
    on it: it trains, its model folder alone rebuilds it (evaluate and predict), and bad settings are clear."""
    from rnnlab.config import compose, family_view, validate
    from rnnlab.data.prepare import run_data_stage
    from rnnlab.tasks.classify.evaluate import classify_texts, load_model
    from rnnlab.training.train import train

    from rnnlab import tasks
    from rnnlab.data.prepare import load_raw
    from rnnlab.tasks.lm.data import encode_lines

    monkeypatch.chdir(tiny_project["dir"])
    overrides = tiny_project["overrides"]
    run_data_stage(family_view(compose(overrides), "classify"), "download")  # data/raw/tiny: its train text
    bilm = ["lm.model.bidirectional=true", "lm.model.residual=true", "lm.model.num_layers=2",
            "lm.model.embedding_mode=frozen", "lm.model.token_layer=word+chars", "lm.model.char_dim=4",
            "lm.model.char_filters=[[1,4],[3,4]]", "lm.model.max_word_chars=10"]
    lm = family_view(compose([*overrides, *bilm, "lm.bilm.extra_train_text=null"]), "lm")
    validate(lm)
    for bad, message in ((["lm.model.token_layer=chars"], r"token_layer=chars \(a character CNN\) is a biLM option"),
                         ([*bilm, "lm.model.char_filters=[[12,4]]"], r"lm.model.char_filters: a filter of width 12")):
        with pytest.raises(ConfigError, match=message):
            validate(family_view(compose([*overrides, *bad]), "lm"))
    for stage in ("download", "tokenize", "embed"):
        run_data_stage(lm, stage)
    # with extra_train_text, the classification data set's training texts (only) join the training stream
    built = tasks.get("lm").build(family_view(compose([*overrides, *bilm, "lm.bilm.extra_train_text=data/raw/tiny"]), "lm"))
    with pytest.raises(ConfigError, match=r"extra_train_text=data/raw/nope: .*not a finished download output"):
        tasks.get("lm").build(family_view(compose([*overrides, *bilm, "lm.bilm.extra_train_text=data/raw/nope"]), "lm"))
    raw = load_raw(tiny_project["dir"] / "data/raw/tiny")
    corpus = np.load(tiny_project["dir"] / "data/tokenized/tinylm/train.npy")
    extra = built.datamodule.streams["train"][corpus.size:]
    assert np.array_equal(built.datamodule.streams["train"][:corpus.size], corpus)
    split_off = [t.replace(".", " .").replace("!", " !") for t in raw["train"]["text"]]  # as WikiText comes
    expected = encode_lines(built.datamodule.tokenizer, split_off)
    assert built.info["extra_train_text"]["lines"] == raw["train"].num_rows
    assert np.array_equal(extra, expected) and built.info["extra_train_text"]["tokens"] == expected.size
    assert (extra == 1).sum() == raw["train"].num_rows  # one <eos> per text: no validation or test text
    summary = train(lm, tiny_project["dir"] / "models/bilm/tinylm", [])
    assert summary["epochs_run"] == 2 and summary["best_val_ppl"] < 13  # below uniform over its 13 words
    classify = family_view(compose([*overrides, "classify.model.contextual=elmo",
                                    "classify.model.contextual_encoder=models/bilm/tinylm",
                                    "classify.trainer.max_epochs=2"]), "classify")
    validate(classify)
    for stage in ("download", "tokenize", "embed"):
        run_data_stage(classify, stage)
    result = train(classify, tiny_project["dir"] / "models/classify/tiny/elmo", [])
    assert result["epochs_run"] == 2
    model, info = load_model(tiny_project["dir"] / "models/classify/tiny/elmo")
    assert info["contextual"]["encoder"] == "models/bilm/tinylm" and model.contextual is not None
    weights = torch.load(tiny_project["dir"] / "models/bilm/tinylm/model.pt", weights_only=True)
    assert torch.equal(model.contextual.bilm.forward_layers[1].weight_hh_l0, weights["forward_layers.1.weight_hh_l0"])
    assert info["contextual"]["token_dim"] == 8 + 8  # the tiny GloVe and the character CNN's 4 + 4 filters
    out = classify_texts(tiny_project["dir"] / "models/classify/tiny/elmo", ["a great film", "an awful movie"])
    assert [sum(r["probabilities"].values()) for r in out] == pytest.approx([1.0, 1.0], abs=1e-4)
    # the explorer's neighbours: by the word's own vector the same in both sentences, by its contextual one not
    from rnnlab.errors import DataError
    from rnnlab.tasks.classify.evaluate import load_classifier, word_neighbours
    from rnnlab.tasks.classify.explorer_tab import neighbours_html

    loaded = load_classifier(tiny_project["dir"] / "models/classify/tiny/elmo")
    a, b = (word_neighbours(loaded, text, "film") for text in ("a great film", "an awful bad film !"))
    assert a["static"] == b["static"] and len(a["static"]) == 8
    assert a["contextual"] != b["contextual"] and len(a["contextual"]) == 8
    assert all(-1.0 <= c <= 1.0 for _, _, c in a["contextual"])
    assert 'id="classify-neighbours-contextual"' in neighbours_html(a)
    with pytest.raises(DataError, match=r"give one word of the sentence"):
        word_neighbours(loaded, "a great film", "river")
    with pytest.raises(ConfigError, match=r"classify.model.contextual_encoder=models/lm/none: no trained biLM"):
        bad = family_view(compose([*overrides, "classify.model.contextual=elmo",
                                   "classify.model.contextual_encoder=models/lm/none"]), "classify")
        train(bad, tiny_project["dir"] / "models/classify/tiny/bad", [])
    assert not (tiny_project["dir"] / "models/classify/tiny/bad").exists()


def test_words_are_spelled_as_bytes_between_markers_and_truncated_keeping_the_end():
    from rnnlab.models.chars import BOW, EOW, PAD, encode_words

    out = encode_words(["ab", "é", "abcdefgh"], 6)
    assert out.tolist() == [[BOW, ord("a") + 3, ord("b") + 3, EOW, PAD, PAD],
                            [BOW, 0xC3 + 3, 0xA9 + 3, EOW, PAD, PAD],  # é is two UTF-8 bytes
                            [BOW, *(ord(c) + 3 for c in "abcd"), EOW]]
    with pytest.raises(ConfigError, match=r"max_word_chars=2"):
        encode_words(["a"], 2)


def test_character_cnn_settings_are_checked():
    from rnnlab.models.chars import CharCNN, check_filters

    assert check_filters([[1, 4], [3, 2]], 5) == [(1, 4), (3, 2)]
    with pytest.raises(ConfigError, match=r"wider than max_word_chars=4"):
        check_filters([[5, 4]], 4)
    with pytest.raises(ConfigError, match=r"list of \[width, count\] pairs"):
        check_filters([3, 4], 10)
    with pytest.raises(ConfigError, match=r"at least one"):
        check_filters([], 10)
    cnn = CharCNN(4, [[1, 3], [2, 5]], 1, 8)
    assert cnn.output_size == 8 and cnn.embed_words(["a", "bb", "a"]).shape == (3, 8)


def _char_bilm(words: list[str], token_layer: str = "word+chars") -> BiLM:
    torch.manual_seed(0)
    return BiLM(len(words), 5, H, 2, "lstm", 0.0, True, "full", None, None, "random", token_layer,
                {"char_dim": 4, "char_filters": [[1, 3], [2, 5]], "max_word_chars": 8}, words).eval()


def test_a_character_token_layer_spells_each_vocabulary_word_once_per_batch():
    words = ["<unk>", "<eos>", "the", "river", "bank", "banks"]
    model = _char_bilm(words)
    ids = torch.tensor([[2, 3, 4, 2], [5, 4, 4, 0]])
    with torch.no_grad():
        got = model.token_inputs(ids)
        direct = torch.cat([model.embedding(ids), model.chars.embed_words([words[i] for i in ids.flatten()])
                            .view(2, 4, -1)], -1)
    assert got.shape == (2, 4, 5 + 8) and torch.allclose(got, direct, atol=1e-6)
    chars_only = _char_bilm(words, "chars")
    assert chars_only.embedding is None and chars_only.token_inputs(ids).shape == (2, 4, 8)
    with pytest.raises(ConfigError, match=r"token_layer='bytes'"):
        _char_bilm(words, "bytes")


@pytest.mark.parametrize("token_layer", ["word", "word+chars", "chars"])
def test_words_glove_does_not_know_get_vectors_of_their_own_only_with_characters(tmp_path, token_layer):
    """A consumer's words outside GloVe all share the biLM's <unk> vector with a word token layer; with the
    character CNN each gets its spelling's vector (computed once, by the trained CNN)."""
    from conftest import write_tiny_glove
    from rnnlab.models.bilm import contextual_for_vocabulary

    vec_path, words_path = write_tiny_glove(tmp_path)
    folder, bilm = _biLM_folder(tmp_path, vec_path, words_path, token_layer)
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "the", "river", "bank", "movie"])}
    features, record = contextual_for_vocabulary(folder, vocab, dropout=0.0)
    river, bank = features.vectors[vocab["river"]], features.vectors[vocab["bank"]]
    if token_layer == "word":
        assert torch.equal(river, bank)
    else:
        assert not torch.allclose(river, bank)
        spelled = bilm.chars.embed_words(["river", "bank"])
        assert torch.allclose(features.vectors[[3, 4], -8:], spelled, atol=1e-6)
    assert record["token_dim"] == {"word": 8, "word+chars": 16, "chars": 8}[token_layer]
    assert record["vocab_found"] == (None if token_layer == "chars" else 2)
    ids = torch.tensor([[2, 3, 4]])
    with torch.no_grad():  # the consumer's features equal the whole biLM's on the same words
        own = bilm.layers(torch.tensor([[2, 3, 4]]), torch.tensor([3]),
                          features.vectors[ids]) if token_layer == "word" else None
        mine = features.layers(ids, torch.tensor([3]))
    assert mine.shape == (3, 1, 3, 2 * H)
    if own is not None:
        assert torch.allclose(own, mine)
