"""The text-to-SQL family's model side (rnnlab.tasks.sql): the copy mixture is a distribution whose copy mass
lands on the right ids, beam 1 equals greedy through the bound copy model, a tiny copy model copies a value it
never saw while a closed vocabulary cannot, and the family end to end on a tiny generated database (train,
evaluate, predict CLI, Spider-format local data, config errors)."""

from __future__ import annotations

import json
import random
import sqlite3

import numpy as np
import pytest
import torch

from rnnlab.data.tokenizer import BOS_ID, EOS_ID, UNK_ID
from rnnlab.errors import ConfigError, DataError
from rnnlab.tasks.sql.data import copy_ids
from rnnlab.tasks.sql.model import CopySeq2Seq, build_text2sql

MODEL_CFG = {"cell": "lstm", "tgt_embedding_dim": 16, "hidden_size": 32, "encoder_layers": 1, "decoder_layers": 1,
             "bidirectional": True, "dropout": 0.0, "attention": "additive", "input_feeding": False,
             "embedding_mode": "random", "literals": "copy"}


def test_copy_ids_map_known_words_to_the_vocabulary_and_others_to_their_first_position():
    vocab = {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3, "SELECT": 4, "JFK": 5}
    source, target = copy_ids(["from", "JFK", "to", "BOS", "BOS"], ["SELECT", "JFK", "BOS", "LAX"], vocab, UNK_ID)
    assert source == [6 + 0, 5, 6 + 2, 6 + 3, 6 + 3]  # V = 6; "BOS" twice -> its first position
    assert target == [4, 5, 9, 1]  # a word in neither the vocabulary nor the question -> <unk>


def _tiny(attention: str = "additive", literals: str = "copy", vocab: int = 12, seed: int = 0):
    torch.manual_seed(seed)
    cfg = {**MODEL_CFG, "attention": attention, "literals": literals}
    return build_text2sql(cfg, 20, vocab, np.zeros((20, 8), np.float32))


@pytest.mark.parametrize("attention", ["additive", "none"])
def test_the_mixture_is_a_distribution_and_copy_mass_lands_on_the_source_words_ids(attention):
    model = _tiny(attention).eval()
    assert isinstance(model, CopySeq2Seq)
    src = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    lengths = torch.tensor([3, 2])
    ext = torch.tensor([[4, 12 + 1, 12 + 2, 0], [12 + 0, 12 + 0, 0, 0]])  # V = 12
    tgt_in = torch.tensor([[BOS_ID, 4, 13], [BOS_ID, 12, 0]])
    log_probs, pointer, p_gen = model.copy_pass(src, lengths, ext, tgt_in)
    probs = log_probs.exp()
    assert torch.allclose(probs.sum(-1), torch.ones(2, 3), atol=1e-5)
    # positions outside a question get nothing; padding gets no pointer weight
    assert probs[1, :, 12 + 1:].max() == 0 and pointer[1, :, 2:].abs().max() == 0
    # an extended id no real question word maps to is impossible (-inf), not merely unlikely: beam search
    # would otherwise fill its beam with ids pointing into padding
    assert torch.isinf(log_probs[1, :, 12 + 1:]).all() and torch.isinf(log_probs[0, :, 12 + 0]).all()
    assert torch.isfinite(log_probs[0, :, 12 + 1:12 + 3]).all()
    # the copy mass of position 0 (a vocabulary word, id 4) is added to id 4: P(4) >= p_gen * P_vocab(4)
    vocab = torch.softmax(model.scores(model._attend(*_decoder_out(model, src, lengths, ext, tgt_in))[0]), -1)
    assert torch.all(probs[0, :, 4] + 1e-6 >= p_gen[0, :, 0] * vocab[0, :, 4])
    expected = p_gen[0, :, 0] * vocab[0, :, 4] + (1 - p_gen[0, :, 0]) * pointer[0, :, 0]
    assert torch.allclose(probs[0, :, 4], expected, atol=1e-5)


def _decoder_out(model, src, lengths, ext, tgt_in):
    memory, state = model.encode(src, lengths, ext)
    x = model.tgt_embedding(model._inputs(tgt_in))
    if memory.summary is not None:
        x = torch.cat([x, memory.summary.expand(-1, x.size(1), -1)], dim=-1)
    out, _ = model.decoder(x, state)
    return out, memory


def test_beam_one_is_greedy_and_step_decoding_matches_the_fused_pass():
    from rnnlab.tasks.seq2seq.decoding import beam_search, greedy_decode

    model = _tiny().eval()
    src = torch.tensor([[5, 6, 7], [8, 9, 0]])
    lengths = torch.tensor([3, 2])
    ext = torch.tensor([[4, 13, 14], [12, 12, 0]])
    bound = model.bind(ext)
    greedy = greedy_decode(bound, src, lengths, BOS_ID, EOS_ID, max_length=6)
    beam = beam_search(bound, src, lengths, BOS_ID, EOS_ID, beam=1, max_length=6, length_penalty=0.0)
    assert greedy.tokens == beam.tokens
    # the step-by-step log-probabilities of the greedy output equal the fused teacher-forced pass over it
    row = greedy.tokens[0]
    tgt_in = torch.tensor([[BOS_ID, *row]])
    with torch.no_grad():
        fused = model.copy_pass(src[:1], lengths[:1], ext[:1], tgt_in)[0]
    assert abs(float(fused[0, torch.arange(len(row)), torch.tensor(row)].sum()) -
               sum(float(fused[0, t].max()) for t in range(len(row)))) < 1e-4


def _copy_task(values: list[str], n: int, seed: int):
    """Questions "count flights from X please" -> "SELECT COUNT FROM f WHERE o = ' X '"."""
    rng = random.Random(seed)
    return [(["count", "flights", "from", v, "please"], ["SELECT", "COUNT", "WHERE", "o", "=", "'", v, "'"])
            for v in (rng.choice(values) for _ in range(n))]


def test_a_tiny_copy_model_copies_a_value_it_never_saw():
    """The point of the pointer: trained on 6 airport codes that the target vocabulary does not hold, it writes a
    seventh, never seen on either side, from the question."""
    from rnnlab.tasks.seq2seq.decoding import greedy_decode

    seen = ["JFK", "LGA", "EWR", "ORD", "ATL", "BOS"]
    pairs = _copy_task(seen, 240, 0)
    source_vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<bos>", "<eos>", "count", "flights", "from",
                                                 "please", *seen])}
    target_words = ["<pad>", "<unk>", "<bos>", "<eos>", "SELECT", "COUNT", "WHERE", "o", "=", "'"]
    target_vocab = {w: i for i, w in enumerate(target_words)}  # no value is in the target vocabulary
    torch.manual_seed(0)
    model = build_text2sql(MODEL_CFG, len(source_vocab), len(target_vocab),
                           np.zeros((len(source_vocab), 8), np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(150):
        batch = pairs[(step * 16) % 240:(step * 16) % 240 + 16]
        src = torch.tensor([[source_vocab.get(w, UNK_ID) for w in q] for q, _ in batch])
        ext, tgt = zip(*(copy_ids(q, s, target_vocab, UNK_ID) for q, s in batch))
        loss = model.copy_loss(src, torch.full((len(batch),), 5), torch.tensor(ext),
                               torch.tensor([[BOS_ID, *t] for t in tgt]), torch.tensor([[*t, EOS_ID] for t in tgt]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    question = ["count", "flights", "from", "SFO", "please"]  # SFO: <unk> to the encoder, absent from the targets
    src = torch.tensor([[source_vocab.get(w, UNK_ID) for w in question]])
    ext, _ = copy_ids(question, None, target_vocab, UNK_ID)
    ids = greedy_decode(model.bind(torch.tensor([ext])), src, torch.tensor([5]), BOS_ID, EOS_ID,
                        max_length=12).tokens[0]
    size = len(target_vocab)
    assert [question[i - size] if i >= size else target_words[i] for i in ids] == \
        ["SELECT", "COUNT", "WHERE", "o", "=", "'", "SFO", "'"]


def test_execution_scores_right_wrong_and_invalid_predictions_and_the_compile_filter(tmp_path):
    """Executor against a real (tiny) database: the gold text, an equivalent text, wrong rows, invalid SQL; and
    first_valid skips hypotheses that do not compile."""
    from sql_tiny import write_tiny_tables

    from rnnlab.tasks.sql.database import build_database, execute, open_readonly
    from rnnlab.tasks.sql.evaluate import Executor, Hypotheses, first_valid
    from rnnlab.tasks.sql.grammar import sql_tokens

    database = tmp_path / "db.sqlite"
    build_database(write_tiny_tables(tmp_path / "tables"), database)
    conn = open_readonly(database)
    gold_sql = "SELECT COUNT ( * ) FROM flights WHERE flights.origin = 'JFK'"
    result = execute(conn, gold_sql)
    gold = {"columns": result.columns, "rows": [list(r) for r in result.rows], "truncated": False}
    executor = Executor(conn, 1000)
    assert executor.correct(gold_sql, gold_sql, gold) and executor.runs == 0  # same text: the stored result
    assert executor.correct("SELECT count(*) FROM flights WHERE origin = 'JFK'", gold_sql, gold)
    assert not executor.correct("SELECT COUNT ( * ) FROM flights WHERE flights.origin = 'LGA'", gold_sql, gold)
    assert not executor.correct("SELECT COUNT ( * ) FROM flights WHERE", gold_sql, gold)  # a syntax error
    assert not executor.correct("SELECT COUNT ( * ) FROM flights WHERE flights.nope = 1", gold_sql, gold)
    assert not executor.correct("DROP TABLE flights", gold_sql, gold)
    assert executor.runs == 5
    hyps = Hypotheses([sql_tokens("SELECT COUNT ( * ) FROM flights WHERE"), sql_tokens("SELECT nope FROM flights"),
                       sql_tokens(gold_sql)], [-0.1, -0.2, -0.3], [], [])
    assert first_valid(conn, hyps) == 2
    assert first_valid(conn, Hypotheses([["SELECT"], ["FROM"]], [0.0, 0.0], [], [])) == 0  # none: the best
    conn.close()


# --------------------------------------------------------------------------- the family on a tiny database


@pytest.fixture
def sql_project(tiny_project, monkeypatch):
    """The tiny project's sql family view (tables written by the test, a generated database)."""
    from rnnlab.config import compose, family_view, validate

    monkeypatch.chdir(tiny_project["dir"])
    cfg = family_view(compose(tiny_project["overrides"]), "sql")
    validate(cfg)
    return cfg, tiny_project["dir"], tiny_project["overrides"]


def test_data_stages_split_held_out_items_into_test_unseen_only(sql_project):
    from rnnlab.data.prepare import raw_dir, run_data_stage
    from rnnlab.tasks.sql.data import load_tokenized

    cfg, folder, _ = sql_project
    stats = run_data_stage(cfg, "download")
    for stage in ("tokenize", "embed"):
        run_data_stage(cfg, stage)
    dataset, tokenizers, lexicon = load_tokenized(folder / "data/tokenized" / cfg.data.name)
    train = dataset["train"]
    seen_shapes = set(train["shape"])
    unseen = dataset["test_unseen"]
    assert len(unseen) > 0 and all(tags for tags in unseen["unseen"])
    for tags, shape in zip(unseen["unseen"], unseen["shape"]):
        if tags == ["shape"]:
            assert shape not in seen_shapes
    assert not set(train["question"]) & (set(unseen["question"]) | set(dataset["test_random"]["question"]))
    assert stats["novelty"]["test_random"]["unseen_shape"] <= stats["novelty"]["test_unseen"]["unseen_shape"]
    # every test question carries its gold result, and the database is in the download output
    assert all(json.loads(g)["rows"] for g in dataset["test_random"]["gold"])
    assert (raw_dir(cfg) / "database.sqlite").is_file()


def test_train_evaluate_and_predict_on_the_tiny_database(sql_project, capsys):
    from rnnlab.data.prepare import run_data_stage
    from rnnlab.tasks.sql.evaluate import answer_questions
    from rnnlab.training.train import train

    cfg, folder, _ = sql_project
    for stage in ("download", "tokenize", "embed"):
        run_data_stage(cfg, stage)
    model_dir = folder / "models" / "sql-copy"
    train(cfg, model_dir)
    from rnnlab import tasks

    metrics = tasks.get("sql").evaluate(cfg, model_dir, folder / "m.json", folder / "plots", log_to_mlflow=False)
    for split in ("test_random", "test_unseen"):
        for key in ("execution", "exact", "execution_greedy", "execution_beam", "execution_valid"):
            assert 0.0 <= metrics[f"{split}_{key}"] <= 1.0
        assert metrics[f"{split}_exact"] <= metrics[f"{split}_execution"] + 1e-9  # same SQL, same rows
    rows = [json.loads(line) for line in (folder / "plots" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["test_random_questions"] + metrics["test_unseen_questions"]
    answer = answer_questions(model_dir, ["how many flights left JFK in March?"], beam=3,
                              database=folder / "data/raw" / cfg.data.name / "database.sqlite")[0]
    assert len(answer["n_best"]) == 3 and answer["sql"] in [h["sql"] for h in answer["n_best"]]
    from rnnlab.predict import main as predict_main

    question = "how many flights left JFK in March?"
    capsys.readouterr()  # (the training's epoch lines)
    assert predict_main(["--model", str(model_dir), "--beam", "2", question]) == 0
    printed = capsys.readouterr().out.splitlines()
    same = answer_questions(model_dir, [question], beam=2,
                            database=folder / "data/raw" / cfg.data.name / "database.sqlite")[0]
    assert printed[0] == (same["sql"] or "(empty query)") and len(printed) >= 2
    assert predict_main(["--model", str(model_dir), "--beam", "0", question]) == 2
    assert "--beam must be at least 1" in capsys.readouterr().err
    # a question's full stop is split off ("... JFK." reads the value JFK); a value's period stays ("Inc.")
    from rnnlab.tasks.sql.evaluate import load_sql_model, prepare

    loaded = load_sql_model(model_dir)
    assert prepare(loaded, "how many flights left JFK.").words[-2:] == ["JFK", "."]
    name = next(v for v in loaded.lexicon["airline_name"] if v.endswith("."))
    assert prepare(loaded, f"how many flights did {name}").words[-1] == name.split()[-1]


def test_local_spider_pairs_are_read_and_bad_ones_refused_without_output(sql_project, tmp_path):
    from rnnlab.config import compose, family_view
    from rnnlab.data.prepare import raw_dir, run_data_stage
    from rnnlab.tasks.sql.database import build_database

    from sql_tiny import write_tiny_tables

    _, folder, tiny = sql_project
    database = tmp_path / "flights.sqlite"
    build_database(write_tiny_tables(tmp_path / "tables"), database)
    conn = sqlite3.connect(database)
    carriers = [r[0] for r in conn.execute("SELECT DISTINCT carrier FROM flights ORDER BY carrier")]
    conn.close()
    pairs = [{"db_id": "flights", "question": f"how many flights did {c} fly ?",
              "query": f"SELECT COUNT(*) FROM flights WHERE carrier = '{c}'"} for c in carriers] * 10
    pairs = [{**p, "question": p["question"] + " " + str(i)} for i, p in enumerate(pairs)]
    train_json, test_json = tmp_path / "train.json", tmp_path / "dev.json"
    train_json.write_text(json.dumps(pairs[5:]), encoding="utf-8")
    test_json.write_text(json.dumps(pairs[:5]), encoding="utf-8")
    overrides = ["sql.data.source=local", "sql.data.local.tables=null", f"sql.data.local.train={train_json}", f"sql.data.local.test={test_json}",
                 f"sql.data.local.database={database}", "sql.data.name=spiderlike"]
    local = family_view(compose([*tiny, *overrides]), "sql")
    stats = run_data_stage(local, "download")
    assert stats["counts"]["test_unseen"] == 5 and stats["source"] == "local"
    test_json.write_text("[{\"question\": \"no query here\"}]", encoding="utf-8")
    broken = family_view(compose([*tiny, *overrides, "sql.data.name=broken"]), "sql")
    with pytest.raises(DataError, match="item 0 has no non-empty string"):
        run_data_stage(broken, "download")
    assert not raw_dir(broken).exists()


@pytest.mark.parametrize("override, message", [
    ("sql.tokenizer.source.lowercase=true", "lowercase=false"),
    ("sql.model.output_layer=adaptive", "sql.model.output_layer"),
    ("sql.model.input_feeding=true", "input_feeding=true needs attention"),
    ("sql.data.split.heldout_values=0.95", "heldout_values"),
])
def test_nonsense_settings_are_config_errors(override, message):
    from rnnlab.config import compose, family_view, validate

    extra = ["sql.model.attention=none"] if "input_feeding" in override else []
    with pytest.raises(ConfigError, match=message):
        validate(family_view(compose([override, *extra]), "sql"))

