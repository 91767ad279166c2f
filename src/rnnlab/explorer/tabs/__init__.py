"""One explorer tab per task family. A tab is a `Tab` (base.py): how to load the family's model, what to show
for one input (plain data, testable without a browser), and its Gradio layout. A new family adds its module
here and its entry in TABS; a family without one gets a page saying so."""

from __future__ import annotations

from rnnlab.explorer.tabs.base import Tab
from rnnlab.explorer.tabs.classify import ClassifyTab
from rnnlab.explorer.tabs.seq2seq import TranslateTab

TABS: dict[str, Tab] = {tab.family: tab for tab in (ClassifyTab(), TranslateTab())}

__all__ = ["TABS", "Tab"]
