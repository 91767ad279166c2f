"""dvc.yaml's code dependencies cannot go stale: every project module a stage's command can import (its
script, and the task family it runs, followed through every `import rnnlab...` statement, also those inside
functions) must be a declared dependency of that stage, as a file or a folder above it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def imported_modules(path: Path) -> set[str]:
    """Every rnnlab module an import statement anywhere in the file names (and the packages above it)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    found = set()
    for name in names:
        if name == "rnnlab" or name.startswith("rnnlab."):
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {n for n in found if module_file(n) is not None}


def closure(start: list[Path]) -> set[Path]:
    """Project files reachable from `start` through import statements."""
    todo, seen = list(start), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(module_file(name) for name in imported_modules(path))
    return seen


def stage_sources(stage: dict) -> list[Path]:
    """The script a stage runs and the family package it names (`family=F` in its command)."""
    cmd = " ".join(stage["cmd"]) if isinstance(stage["cmd"], list) else stage["cmd"]
    sources = [ROOT / m for m in re.findall(r"python (pipelines/\S+\.py)", cmd)]
    family = re.search(r"\bfamily=(\w+)", cmd)
    if family:
        sources.append(module_file(f"rnnlab.tasks.{family.group(1)}"))
    return sources


def declared(stage: dict) -> list[Path]:
    deps = []
    for dep in stage.get("deps", []):
        deps.append(ROOT / (dep if isinstance(dep, str) else next(iter(dep))))
    return deps


def undeclared(stage: dict) -> list[str]:
    deps = declared(stage)
    missing = []
    for path in sorted(closure(stage_sources(stage))):
        if not any(path == d or d in path.parents for d in deps):
            missing.append(str(path.relative_to(ROOT)))
    return missing


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_declares_every_module_it_can_import(name):
    stage = STAGES[name]
    assert stage_sources(stage), f"{name}: no pipelines/*.py script in its command"
    missing = undeclared(stage)
    assert not missing, f"dvc.yaml stage {name} imports modules it does not depend on: {missing}"


def test_every_declared_code_dependency_exists():
    for name, stage in STAGES.items():
        for dep in declared(stage):
            if "${" not in str(dep) and str(dep.relative_to(ROOT)).startswith(("src", "pipelines")):
                assert dep.exists(), f"{name} depends on {dep}, which does not exist"


if __name__ == "__main__":  # print each stage's missing dependencies (to fill in dvc.yaml)
    for name, stage in STAGES.items():
        print(name, undeclared(stage))


HEAVY_FOR_DATA = ("torch", "pytorch_lightning", "mlflow")

_IMPORT_PROBE = """
import importlib, sys
from rnnlab import stages, tasks
from rnnlab.config import compose, family_view, validate
cfg = compose([])
for name in tasks.names():
    view = family_view(cfg, name)
    validate(view)
    importlib.import_module(tasks.get(name).data_module)
heavy = sorted(m for m in {heavy} if m in sys.modules)
from rnnlab.tasks.classify.evaluate import load_model, test_loader
test_loader([[5, 6, 7]], [0])
print(heavy, "pytorch_lightning" in sys.modules)
"""


def test_data_stages_import_no_torch_and_evaluation_no_lightning():
    """What a data stage loads (the composed config, every family's validation and data hooks) needs no
    torch, Lightning or MLflow, and classification evaluation needs no Lightning: seconds of start-up per
    stage process (measured: a tiny classify evaluate stage 16.6 s -> 8.8 s, a data stage 4.8 s -> 2.8 s)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE.format(heavy=HEAVY_FOR_DATA)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["[]", "False"], proc.stdout
