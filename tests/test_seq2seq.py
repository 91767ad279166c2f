"""Seq2seq model, attention and decoding: masking, padding invariance, beam 1 == greedy, teacher
forcing, and tiny symbol tasks: copying long sequences, which only attention learns, and short reversals,
which a decoder without attention learns too."""

import numpy as np
import pytest
import torch

from rnnlab.models.attention import Attention
from rnnlab.tasks.seq2seq.decoding import beam_search, greedy_decode
from rnnlab.tasks.seq2seq.model import Seq2Seq
from rnnlab.tasks.seq2seq.module import teacher_forcing_ratio

BOS, EOS = 2, 3
VARIANTS = [(cell, attention, bidirectional, feeding)
            for cell in ("rnn", "lstm", "gru")
            for attention, bidirectional, feeding in (("none", True, False), ("additive", True, False),
                                                      ("dot", False, False), ("general", True, True))]


def _model(cell="gru", attention="additive", bidirectional=True, input_feeding=False, vocab=20, seed=0):
    torch.manual_seed(seed)
    return Seq2Seq(vocab, vocab, cell, src_embedding_dim=8, tgt_embedding_dim=8, hidden_size=16,
                   bidirectional=bidirectional, dropout=0.0, attention=attention,
                   input_feeding=input_feeding).eval()


def _batch(lengths, vocab=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    src = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        src[row, :n] = torch.randint(4, vocab, (n,), generator=g)
    return src, torch.tensor(lengths)


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_attention_weights_sum_to_one_and_ignore_padding(kind):
    attn = Attention(kind, 6, 6)
    query, keys = torch.randn(3, 4, 6), torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    context, weights = attn(query, keys, mask)
    assert weights.shape == (3, 4, 5) and context.shape == (3, 4, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    assert torch.all(weights.masked_select(~mask.unsqueeze(1).expand_as(weights)) == 0)
    # changing keys at padded positions changes nothing
    noisy = keys.clone()
    noisy[~mask] = 100.0
    torch.testing.assert_close(attn(query, noisy, mask)[0], context)


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_scaled_attention_divides_dot_and_general_scores_by_the_root_of_the_query_size(kind):
    torch.manual_seed(0)
    plain = Attention(kind, 16, 16)
    scaled = Attention(kind, 16, 16, scaled=True)
    scaled.load_state_dict(plain.state_dict())
    query, keys = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    ratio = 1.0 if kind == "additive" else 0.25  # additive scores pass through tanh and a learned vector
    torch.testing.assert_close(scaled.scores(query, scaled.project_keys(keys)),
                               plain.scores(query, plain.project_keys(keys)) * ratio)


@pytest.mark.parametrize("cell,attention,bidirectional,feeding", VARIANTS)
def test_beam_size_one_is_exactly_greedy(cell, attention, bidirectional, feeding):
    model = _model(cell, attention, bidirectional, feeding)
    src, lengths = _batch([5, 3, 7, 1, 4])
    greedy = greedy_decode(model, src, lengths, BOS, EOS, max_length=12)
    beam = beam_search(model, src, lengths, BOS, EOS, beam=1, max_length=12, length_penalty=0.0)
    assert greedy.tokens == beam.tokens
    np.testing.assert_allclose(greedy.scores, beam.scores, rtol=1e-5, atol=1e-5)
    assert any(len(t) > 0 for t in greedy.tokens)


@pytest.mark.parametrize("attention", ["none", "general"])
def test_n_best_lists_distinct_hypotheses_best_first_with_their_true_scores(attention):
    """The explorer's n-best list: the first is the beam's output, scores fall, hypotheses differ, and each
    score is the hypothesis's own log-probability (incl. <eos>) divided by GNMT's length penalty."""
    model = _model("gru", attention, vocab=12)
    src, lengths = _batch([5, 3], vocab=12)
    penalty, limit = 0.6, 30
    plain = beam_search(model, src, lengths, BOS, EOS, beam=4, max_length=limit, max_len_a=0, max_len_b=limit,
                        length_penalty=penalty)
    listed = beam_search(model, src, lengths, BOS, EOS, beam=4, max_length=limit, max_len_a=0, max_len_b=limit,
                         length_penalty=penalty, n_best=4, return_attention=attention != "none")
    assert listed.tokens == plain.tokens and plain.n_best is None
    for row, hypotheses in enumerate(listed.n_best):
        assert 2 <= len(hypotheses) <= 4 and hypotheses[0].tokens == listed.tokens[row]
        assert [h.score for h in hypotheses] == sorted((h.score for h in hypotheses), reverse=True)
        assert len({tuple(h.tokens) for h in hypotheses}) == len(hypotheses)
        for h in hypotheses:
            if len(h.tokens) >= limit:  # <eos> forced at the length limit costs nothing: not a model score
                continue
            tgt_in = torch.tensor([[BOS, *h.tokens]])
            with torch.no_grad():
                logp = torch.log_softmax(model(src[row:row + 1, :lengths[row]], lengths[row:row + 1], tgt_in), -1)[0]
            total = float(logp[torch.arange(len(h.tokens) + 1), torch.tensor([*h.tokens, EOS])].sum())
            assert h.score == pytest.approx(total / ((5 + len(h.tokens) + 1) / 6) ** penalty, abs=1e-4)
            assert (h.attention is None) == (attention == "none")
            if h.attention is not None:
                assert h.attention.shape == (len(h.tokens) + 1, src.size(1))  # the batch's padded width
                assert not h.attention[:, int(lengths[row]):].any()
    with pytest.raises(ValueError, match="n_best must be between 1 and the beam size 4"):
        beam_search(model, src, lengths, BOS, EOS, beam=4, n_best=5)


@pytest.mark.parametrize("cell,attention,bidirectional,feeding", VARIANTS)
def test_source_padding_changes_no_output(cell, attention, bidirectional, feeding):
    model = _model(cell, attention, bidirectional, feeding)
    src, lengths = _batch([6, 2, 4])
    tgt_in = torch.randint(4, 20, (3, 5))
    batch_logits = model(src, lengths, tgt_in)
    batch_beam = beam_search(model, src, lengths, BOS, EOS, beam=3, max_length=10).tokens
    batch_greedy = greedy_decode(model, src, lengths, BOS, EOS, max_length=10, return_attention=True)
    for row, n in enumerate(lengths.tolist()):
        alone, alone_len = src[row:row + 1, :n], lengths[row:row + 1]
        torch.testing.assert_close(model(alone, alone_len, tgt_in[row:row + 1])[0], batch_logits[row],
                                   rtol=1e-4, atol=1e-5)
        assert beam_search(model, alone, alone_len, BOS, EOS, beam=3, max_length=10).tokens[0] == batch_beam[row]
        single = greedy_decode(model, alone, alone_len, BOS, EOS, max_length=10, return_attention=True)
        assert single.tokens[0] == batch_greedy.tokens[row]
        if attention != "none":  # weights over the padded batch: zero beyond the sentence, same inside
            weights = batch_greedy.attention[row]
            assert torch.all(weights[:, n:] == 0)
            torch.testing.assert_close(weights[:, :n], single.attention[0], rtol=1e-4, atol=1e-5)


def test_output_length_limit_and_eos_forcing():
    model = _model()
    src, lengths = _batch([3, 1])
    out = greedy_decode(model, src, lengths, BOS, EOS, max_length=50, max_len_a=1.0, max_len_b=1)
    assert [len(t) for t in out.tokens] <= [4, 2] and all(len(t) <= n + 1 for t, n in zip(out.tokens, [3, 1]))
    assert all(EOS not in t for t in out.tokens)


def test_teacher_forcing_ratio_and_schedule():
    model = _model().train()
    src, lengths = _batch([4, 4])
    tgt = torch.randint(4, 20, (2, 6))
    other = tgt.clone()
    other[:, 1:] = torch.randint(4, 20, (2, 5))
    torch.manual_seed(0)
    free = model(src, lengths, tgt, teacher_forcing=0.0)
    # ratio 0: after <bos> the decoder only reads its own predictions, never the reference
    torch.testing.assert_close(model(src, lengths, other, teacher_forcing=0.0), free)
    forced = model(src, lengths, tgt, teacher_forcing=1.0)
    assert not torch.allclose(model(src, lengths, other, teacher_forcing=1.0), forced)
    cfg = {"teacher_forcing": 1.0, "teacher_forcing_final": 0.5}
    assert [teacher_forcing_ratio(cfg, e, 6) for e in (0, 5)] == [1.0, 0.5]
    assert teacher_forcing_ratio({"teacher_forcing": 0.8, "teacher_forcing_final": None}, 3, 6) == 0.8


def test_decoding_never_reads_the_reference():
    """Validation BLEU decodes greedily: its hypotheses do not change when the references do."""
    from tokenizers import Tokenizer, models

    from rnnlab.tasks.seq2seq.module import Seq2SeqModule

    vocab = {f"w{i}": i for i in range(20)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="w1"))
    cfg = {"cell": "gru", "embedding_mode": "random", "tgt_embedding_dim": 8,
           "hidden_size": 16, "encoder_layers": 1, "decoder_layers": 1, "bidirectional": True, "dropout": 0.0,
           "attention": "additive", "input_feeding": False, "teacher_forcing": 1.0, "teacher_forcing_final": None,
           "label_smoothing": 0.0, "decoding": {"beam": 1, "length_penalty": 0.0, "max_length": 10,
                                                "max_len_a": 2.0, "max_len_b": 2}}
    module = Seq2SeqModule(cfg, {"lr": 1e-3}, 20, 20, np.zeros((20, 8), np.float32), tokenizer, ["a", "b"],
                           {"a": ["x"], "b": ["y"]})
    module.log = lambda *a, **k: None
    src, lengths = _batch([4, 3])
    hypotheses = []
    for seed in (1, 2):
        tgt = torch.randint(4, 20, (2, 5), generator=torch.Generator().manual_seed(seed))
        module._val_hypotheses = {}
        module.validation_step({"ids": src, "lengths": lengths, "tgt_in": tgt, "tgt_out": tgt,
                                "index": torch.tensor([0, 1])}, 0)
        hypotheses.append(dict(module._val_hypotheses))
    assert hypotheses[0] == hypotheses[1] and set(hypotheses[0]) == {"a", "b"}


def _symbol_data(n, seed, min_len, max_len, vocab, reverse):
    """Random sequences of min_len..max_len symbols (ids 4..vocab-1) and their copies (reversed with `reverse`)."""
    rng = np.random.default_rng(seed)
    src = [list(rng.integers(4, vocab, size=rng.integers(min_len, max_len + 1))) for _ in range(n)]
    return src, [s[::-1] if reverse else s for s in src]


def _reversal_data(n, seed, max_len, vocab=14):
    return _symbol_data(n, seed, 3, max_len, vocab, reverse=True)


def _pad(seqs):
    out = torch.zeros(len(seqs), max(len(s) for s in seqs), dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
    return out


def _train_symbol_task(attention: str, data: tuple, steps: int, vocab: int, hidden: int, embedding: int,
                       test: tuple) -> float:
    """Train a GRU seq2seq on (sources, targets) with Adam and a cosine schedule, batch 64, teacher forcing;
    the greedy exact-match rate on the `test` pairs."""
    torch.manual_seed(0)
    model = Seq2Seq(vocab, vocab, "gru", src_embedding_dim=embedding, tgt_embedding_dim=embedding,
                    hidden_size=hidden, bidirectional=attention != "dot", dropout=0.0, attention=attention)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0)
    src_all, tgt_all = data
    for step in range(steps):
        index = np.random.default_rng(step).integers(0, len(src_all), 64)
        src = _pad([src_all[i] for i in index])
        lengths = torch.tensor([len(src_all[i]) for i in index])
        tgt_in = _pad([[BOS, *tgt_all[i]] for i in index])
        tgt_out = _pad([[*tgt_all[i], EOS] for i in index])
        logits = model(src, lengths, tgt_in)
        loss = loss_fn(logits.reshape(-1, vocab), tgt_out.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    test_src, test_tgt = test
    decoded = greedy_decode(model.eval(), _pad(test_src), torch.tensor([len(s) for s in test_src]), BOS, EOS,
                            max_length=30)
    return float(np.mean([list(map(int, t)) == list(map(int, ref)) for t, ref in zip(decoded.tokens, test_tgt)]))


@pytest.mark.cost(10)
@pytest.mark.slow
@pytest.mark.parametrize("attention", ["additive", "dot", "general", "none"])
def test_copying_long_sequences_needs_attention(attention):
    """Copy 8-12 symbols of 20 through a 32-unit GRU, 600 steps each: every attention type learns it (>= 90%
    exact match on unseen sequences; measured 0.96-0.99), the decoder without attention, which must squeeze the
    whole sequence into one state, does not (<= 10%; measured 0.03, and 0.34 with 3x the steps). 4-8 s each on
    one idle core."""
    vocab = 24
    exact = _train_symbol_task(attention, _symbol_data(6000, 1, 8, 12, vocab, reverse=False), 600, vocab,
                               hidden=32, embedding=16, test=_symbol_data(500, 99, 8, 12, vocab, reverse=False))
    if attention == "none":
        assert exact <= 0.10, f"none: exact match {exact:.3f}: the copy task no longer needs attention"
    else:
        assert exact >= 0.90, f"{attention}: exact match {exact:.3f} after 600 steps"


@pytest.mark.cost(12)
@pytest.mark.slow
def test_without_attention_short_reversals_are_learned():
    """The control of the copy test: without attention the same kind of model does learn short sequences
    (reverse 3-5 symbols, >= 95% exact match in 800 steps), so its failure above is the sequence length."""
    vocab = 14
    exact = _train_symbol_task("none", _reversal_data(6000, 1, 5, vocab), 800, vocab, hidden=64, embedding=32,
                               test=_reversal_data(500, 99, 5, vocab))
    assert exact >= 0.95, f"none: exact match {exact:.3f} after 800 steps"


@pytest.mark.slow
def test_adaptive_output_layer_trains_on_its_exact_log_likelihood():
    """output_layer=adaptive: the fast teacher-forced loss (head + each reference word's cluster only) equals
    cross-entropy over the full log-probabilities that decoding uses; those are normalised; beam 1 is
    still greedy; and the model learns (loss halves in 150 steps of the reversal task)."""
    torch.manual_seed(0)
    vocab = 40
    model = Seq2Seq(vocab, vocab, "gru", src_embedding_dim=8, tgt_embedding_dim=8, hidden_size=16, dropout=0.0,
                    attention="additive", output_layer="adaptive", adaptive_cutoffs=(8, 20))
    src, lengths = _batch([5, 3, 4], vocab)
    tgt_in = _pad([[BOS, 5, 9, 30], [BOS, 25], [BOS, 7, 39]])
    tgt_out = _pad([[5, 9, 30, EOS], [25, EOS], [7, 39, EOS]])
    model.eval()
    scores = model(src, lengths, tgt_in)
    assert torch.allclose(scores.logsumexp(-1), torch.zeros(scores.shape[:2]), atol=1e-5)
    full = torch.nn.functional.cross_entropy(scores.reshape(-1, vocab), tgt_out.reshape(-1), ignore_index=0)
    assert torch.allclose(model.loss(src, lengths, tgt_in, tgt_out), full, atol=1e-5)
    greedy = greedy_decode(model, src, lengths, BOS, EOS, max_length=6)
    assert beam_search(model, src, lengths, BOS, EOS, beam=1, max_length=6).tokens == greedy.tokens

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    src_all, tgt_all = _reversal_data(2000, 1, 5)
    losses = []
    for step in range(150):
        index = np.random.default_rng(step).integers(0, len(src_all), 32)
        loss = model.loss(_pad([src_all[i] for i in index]), torch.tensor([len(src_all[i]) for i in index]),
                          _pad([[BOS, *tgt_all[i]] for i in index]), _pad([[*tgt_all[i], EOS] for i in index]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


@pytest.mark.parametrize("cutoffs", [(), (20, 8), (0,), (40,)])
def test_adaptive_cutoffs_outside_the_vocabulary_are_refused(cutoffs):
    from rnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="adaptive_cutoffs"):
        Seq2Seq(40, 40, "gru", hidden_size=16, output_layer="adaptive", adaptive_cutoffs=cutoffs)


def test_foreign_letters_are_those_outside_the_source_script():
    """What the predict CLI refuses for a seq2seq model whose data config sets `source_script`."""
    from rnnlab.tasks.seq2seq.evaluate import foreign_letters

    assert foreign_letters("Привет, Tom!", "LATIN") == list("Привет")
    assert foreign_letters("Él está aquí, ¿no?", "LATIN") == []  # accented Latin letters and punctuation pass
    assert foreign_letters("Привет", None) == []  # no script configured: any letters


# ---- attention diagnostics, decoder initial state, forget-gate bias ------------------------------------------

def test_attention_entropy_is_one_for_uniform_zero_for_one_hot_and_skips_padding_and_one_word_sources():
    from rnnlab.tasks.seq2seq.module import attention_entropy

    weights = torch.zeros(3, 2, 4)
    weights[0, 0, :4] = 0.25  # uniform over a 4-word source
    weights[0, 1, 2] = 1.0  # all on one word
    weights[1, :, :3] = 1 / 3  # uniform over 3 words; its second step is padding
    weights[2, :, 0] = 1.0  # a one-word source: no choice to measure
    lengths = torch.tensor([4, 3, 1])
    target_mask = torch.tensor([[True, True], [True, False], [True, True]])
    values = attention_entropy(weights, lengths, target_mask)
    assert values.tolist() == pytest.approx([1.0, 0.0, 1.0], abs=1e-6)


def test_gradient_share_is_the_norm_ratio_of_the_gradients():
    from rnnlab.tasks.seq2seq.module import gradient_share

    a, b, c = (torch.zeros(2, requires_grad=True) for _ in range(3))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])  # c has no gradient
    assert float(gradient_share([a], [a, b, c])) == pytest.approx(3 / 5)
    assert float(gradient_share([c], [a, b, c])) == 0.0
    assert float(gradient_share([a, b], [a, b, c])) == pytest.approx(1.0)


def test_attention_weights_of_the_teacher_forced_pass_match_the_decoding_steps():
    """attention_weights() (diagnostics) gives each step's distribution as step-by-step decoding computes it,
    also with input feeding."""
    for feeding in (False, True):
        model = _model("lstm", "general", input_feeding=feeding)
        src, lengths = _batch([5, 3])
        tgt = torch.randint(4, 20, (2, 4), generator=torch.Generator().manual_seed(1))
        weights = model.attention_weights(src, lengths, tgt)
        memory, state = model.encode(src, lengths)
        feed = model.initial_feed(2, src.device)
        for t in range(tgt.size(1)):
            _, state, step, feed = model.decode_step(tgt[:, t], state, memory, feed)
            assert torch.allclose(weights[:, t], step, atol=1e-6)
        assert torch.all(weights[1, :, 3:] == 0)  # padding of the shorter source
    with pytest.raises(ValueError, match="no attention"):
        _model("gru", "none").attention_weights(src, lengths, tgt)


@pytest.mark.parametrize("attention,feeding", [("none", False), ("additive", False), ("general", True)])
def test_reference_pass_gives_the_teacher_forced_scores_and_loss(attention, feeding):
    """Validation takes its loss and attention entropy from one reference_pass(): the same scores and loss as
    forward(teacher_forcing=1) and loss()."""
    model = _model("gru", attention, input_feeding=feeding)
    src, lengths = _batch([5, 3, 4])
    tgt = torch.randint(4, 20, (3, 5), generator=torch.Generator().manual_seed(2))
    tgt[2, 3:] = 0  # padding of a shorter target
    scores, weights = model.reference_pass(src, lengths, tgt)
    torch.testing.assert_close(scores, model(src, lengths, tgt, teacher_forcing=1.0))
    torch.testing.assert_close(model.sequence_loss(scores, tgt, 0.1), model.loss(src, lengths, tgt, tgt, 1.0, 0.1))
    assert (weights is None) == (attention == "none")
    if weights is not None:
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))


def test_without_the_bridge_an_attention_decoder_starts_from_zeros_and_one_without_attention_keeps_it():
    for cell in ("lstm", "gru"):
        model = Seq2Seq(20, 20, cell, src_embedding_dim=8, tgt_embedding_dim=8, hidden_size=16, dropout=0.0,
                        attention="additive", bridge_with_attention=False).eval()
        assert not hasattr(model, "bridge")
        _, state = model.encode(*_batch([5, 3]))
        for part in state if isinstance(state, tuple) else (state,):
            assert part.shape == (1, 2, 16) and not part.any()
    plain = Seq2Seq(20, 20, "gru", src_embedding_dim=8, tgt_embedding_dim=8, hidden_size=16, attention="none",
                    context_every_step=False, bridge_with_attention=False).eval()
    _, state = plain.encode(*_batch([5, 3]))
    assert hasattr(plain, "bridge") and state.abs().sum() > 0  # its only view of the whole source


def test_forget_bias_sets_every_lstm_forget_gate_and_leaves_other_cells_alone():
    model = Seq2Seq(20, 20, "lstm", src_embedding_dim=8, tgt_embedding_dim=8, hidden_size=16, forget_bias=1.0)
    lstms = [m for m in model.modules() if isinstance(m, torch.nn.LSTM)]
    assert len(lstms) == 3  # two encoder directions and the decoder
    for lstm in lstms:
        total = lstm.bias_ih_l0 + lstm.bias_hh_l0  # gates: input, forget, cell, output
        assert torch.all(total[16:32] == 1.0) and not torch.all(total[:16] == 1.0)
    torch.manual_seed(0)
    plain = Seq2Seq(20, 20, "gru", src_embedding_dim=8, tgt_embedding_dim=8, hidden_size=16)
    torch.manual_seed(0)
    biased = Seq2Seq(20, 20, "gru", src_embedding_dim=8, tgt_embedding_dim=8, hidden_size=16, forget_bias=1.0)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), biased.state_dict().values()))


# ---- <unk> in what a reader sees ------------------------------------------------------------------------------

def test_unknown_replacement_copies_the_argmax_attention_source_word_as_written():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from rnnlab.data.tokenizer import UNK_ID, build_tokenizer, detokenize
    from rnnlab.tasks.seq2seq.evaluate import source_words, unknown_replacements

    cfg = OmegaConf.create({"kind": "word", "lowercase": True, "unicode_normalization": "nfkc",
                            "split_punctuation": True, "min_frequency": 1, "max_vocab_size": 100})
    source = build_tokenizer(cfg, ["tom likes tea ."], sequence_specials=False)
    target = build_tokenizer(cfg.copy(), ["a tom le gusta el té ."], sequence_specials=True)
    translator = SimpleNamespace(source_tokenizer=source)
    words = source_words(translator, "Zoë likes Earl-Grey.")  # lower-cased and split by the tokenizer
    assert words == ["Zoë", "likes", "Earl", "-", "Grey", "."]
    output = [target.token_to_id("a"), UNK_ID, target.token_to_id("le"), UNK_ID, target.token_to_id(".")]
    attention = torch.zeros(6, 6)  # (output steps incl. <eos>, source tokens), hand-built
    attention[1, 0] = 0.9  # the first <unk> looks at "Zoë"
    attention[1, 2] = 0.1
    attention[3, 4] = 0.6  # the second at "Grey"
    attention[3, 2] = 0.4
    swaps = unknown_replacements(output, attention, words)
    assert swaps == {1: "Zoë", 3: "Grey"}
    assert detokenize(target, output, swaps) == "a Zoë le Grey."
    assert detokenize(target, output) == "a <unk> le <unk>."


def test_a_banned_token_is_never_decoded_even_when_it_is_the_most_likely():
    from rnnlab.data.tokenizer import UNK_ID

    model = _model("gru", "additive")
    with torch.no_grad():
        model.output.bias[UNK_ID] = 100.0  # <unk> wins every step
    src, lengths = _batch([5, 3, 4])
    plain = greedy_decode(model, src, lengths, bos=2, eos=3, max_length=6)
    assert all(t == UNK_ID for seq in plain.tokens for t in seq) and plain.tokens[0]
    for decoded in (greedy_decode(model, src, lengths, bos=2, eos=3, max_length=6, banned=UNK_ID),
                    beam_search(model, src, lengths, bos=2, eos=3, beam=3, max_length=6, banned=UNK_ID)):
        assert all(UNK_ID not in seq for seq in decoded.tokens) and all(decoded.tokens)
