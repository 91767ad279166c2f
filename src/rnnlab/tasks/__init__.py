"""The task-family registry. A family (text classification, sequence to sequence, ...) is one
`rnnlab.tasks.base.TaskFamily` object holding everything task-specific; shared code (stages, training,
tracking, reports) looks it up here by the name in the config (`family`, the subtree `conf/<family>/`)
and never branches on it.

Built-in families are the subpackages `rnnlab.tasks.<name>` (found on disk: adding one edits nothing
here), each exposing its family object as `FAMILY`, imported only when asked for, so a stage imports the
code of its own family alone. A family from another installed package is found through the entry-point
group `rnnlab.tasks` (`name = "package.module:FAMILY"`); any other (a test) calls `register(family)`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil

from rnnlab.errors import ConfigError

BUILTIN = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))
ENTRY_POINTS = "rnnlab.tasks"
_registered: dict = {}


def _plugins() -> dict:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}


def register(family):
    """Add a family (a TaskFamily instance) under `family.name`; returns it."""
    _registered[family.name] = family
    return family


def unregister(name: str) -> None:
    _registered.pop(name, None)


def names() -> tuple[str, ...]:
    """Every known family name: built-in, installed plug-ins, registered."""
    return tuple(dict.fromkeys([*BUILTIN, *_plugins(), *_registered]))


def get(name: str):
    """The family called `name` (imports a built-in package on first use)."""
    if name not in _registered and name in BUILTIN:
        register(importlib.import_module(f"rnnlab.tasks.{name}").FAMILY)
    elif name not in _registered and name in _plugins():
        register(_plugins()[name].load())
    if name not in _registered:
        raise ConfigError(f"family={name!r} is not a task family. Known families: {', '.join(names())}. "
                          "Fix it with e.g. `family=classify`.")
    return _registered[name]
