"""Shared code never branches on a family's name: outside src/rnnlab/tasks/ and conf/, the names of the
shipped families appear nowhere in the code but the registry's list of built-in families."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rnnlab import tasks
from rnnlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_shared_code_does_not_name_a_family():
    pattern = re.compile(r"\b(" + "|".join(tasks.BUILTIN) + r"|translate)\b")
    shared = [p for p in (ROOT / "src" / "rnnlab").rglob("*.py") if "tasks" not in p.relative_to(ROOT / "src").parts]
    shared += list((ROOT / "pipelines").glob("*.py"))
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in shared
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1) if pattern.search(line)]
    assert not found, "shared code names a family:\n" + "\n".join(found)


def test_every_builtin_family_is_registered_with_its_hooks():
    for name in tasks.BUILTIN:
        family = tasks.get(name)
        assert family.name == name and family.monitors and family.model_schema
        assert all(mode in ("max", "min") for mode in family.monitors.values())


def test_unknown_family_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"family='nope' is not a task family. Known families: classify, lm, ner, seq2seq, sql"):
        tasks.get("nope")
