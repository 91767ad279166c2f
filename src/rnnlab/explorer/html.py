"""Small HTML pieces of the explorer's pages (escaped: the text is the user's)."""

from __future__ import annotations

import html


def shaded_words(words: list[tuple[str, float]], css_class: str = "rnnlab-word") -> str:
    """Each word on a background whose strength is its weight relative to the largest (attention pooling);
    the exact weight is the word's tooltip."""
    top = max((w for _, w in words), default=0.0) or 1.0
    spans = [f'<span class="{css_class}" data-weight="{w:.4f}" title="{w:.3f}" '
             f'style="background: rgba(255, 140, 0, {w / top:.3f}); padding: 2px 3px; margin: 1px; '
             f'border-radius: 3px; display: inline-block">{html.escape(word)}</span>' for word, w in words]
    return '<div class="rnnlab-shaded">' + "".join(spans) + "</div>"


def marked_output(tokens: list[str], replaced: dict[int, str]) -> str:
    """An output's tokens with the unknown-word replacements marked (copied from the source)."""
    parts = [f'<mark class="rnnlab-copied" title="&lt;unk&gt; replaced by the most-attended source word">'
             f"{html.escape(tok)}</mark>" if pos in replaced else html.escape(tok) for pos, tok in enumerate(tokens)]
    note = (f'<div class="rnnlab-note">{len(replaced)} unknown word(s) copied from the source (marked)</div>'
            if replaced else "")
    return '<div class="rnnlab-output">' + " ".join(parts) + "</div>" + note


def message(text: str, kind: str = "error") -> str:
    """A message box in the page (errors: what was wrong and what to do)."""
    return f'<div class="rnnlab-{kind}" role="alert">{html.escape(text)}</div>'
