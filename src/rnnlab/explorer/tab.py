"""What a task family's explorer tab provides. A family names its tab in `TaskFamily.explorer_tab`
("module:Class", imported by the explorer only); `tab_for` finds it. A family without one gets a tab that says
so."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from rnnlab.errors import RnnlabError
from rnnlab.explorer.html import message

log = logging.getLogger("rnnlab.explorer")


class Tab:
    family: str = ""
    prefix: str = ""  # element ids of the tab: <prefix>-input, <prefix>-run, <prefix>-status, ...
    title: str = ""
    example: str = ""  # the input the page starts with (and the browser check types)
    loader: str = ""  # "module:function" turning a model folder into a loaded model (imported on first use)

    def load(self, path: Path) -> Any:
        """The loaded model of a model folder."""
        module, _, function = self.loader.partition(":")
        return getattr(importlib.import_module(module), function)(path)

    def side_by_side(self, model: Any, text: str) -> tuple[str, Any]:
        """One model's answer for the side-by-side view: (HTML, a matplotlib figure or None)."""
        raise NotImplementedError

    def build(self, gr, models, cache) -> None:
        """The tab's layout and events (called inside its gr.Tab)."""
        raise NotImplementedError

    def exercise(self, page, text: str) -> dict:
        """Use the tab in a browser as a user would (page: rnnlab.explorer.browser.Page): type `text`, run it,
        wait for the answer; returns what the page showed."""
        raise NotImplementedError


def tab_for(family: str) -> Tab | None:
    """The explorer tab of a registered family, None when it has none."""
    from rnnlab import tasks

    where = getattr(tasks.get(family), "explorer_tab", None)
    if not where:
        return None
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)()


def guarded(fn, empty: tuple, message_index: int):
    """Wrap an event handler: bad input (an RnnlabError) becomes a message in the page at outputs[message_index]
    and the `empty` values in the other outputs; an unexpected error too (its traceback goes to the server's
    log), so the page never shows a traceback and the server keeps serving."""
    def handler(*args):
        try:
            return fn(*args)
        except RnnlabError as err:
            text = message(str(err))
        except Exception as err:  # noqa: BLE001 - whatever breaks, the page answers and the server lives
            log.exception("explorer: unexpected error")
            text = message(f"internal error ({type(err).__name__}: {err}); the server's log has the details")
        out = list(empty)
        out[message_index] = text
        return tuple(out)

    return handler
