"""The benchmark scripts' shared results file (the timings themselves are never asserted in tests: they live
in benchmarks/results.json with the machine that measured them)."""

import json
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import common  # noqa: E402


def test_records_accumulate_with_machine_and_command_and_render(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(common, "RENDERED", tmp_path / "RESULTS.md")
    common.record("train_throughput_x", "before", {"ratio": 0.651, "rss": {"bare": 800.7}}, "python b.py")
    common.record("train_throughput_x", "after", {"ratio": 0.97, "rss": {"bare": 801.0}}, "python b.py")
    records = json.loads((tmp_path / "results.json").read_text())
    assert [r["label"] for r in records] == ["before", "after"]
    assert {"cpu", "logical_cpus", "torch", "torch_threads"} <= set(records[0]["machine"])
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.index("### after") < text.index("### before")  # newest first
    assert "| rss.bare | 800.7 |" in text and "`python b.py`" in text


def test_worker_failure_names_the_script_and_its_error(tmp_path):
    script = tmp_path / "w.py"
    script.write_text("import sys; sys.exit('no data here')")
    with pytest.raises(RuntimeError, match="(?s)w.py.*no data here"):
        common.run_worker(script, [])
    script.write_text("print('noise'); print('{\"a\": 1}')")
    assert common.run_worker(script, []) == {"a": 1}
