"""`python pipelines/predict.py --model DIR "text" ...`: any family's trained model on new input.

The model folder's model.json names its family; the family adds its own options (e.g. --beam) and turns
each input into the lines to print. Inputs come from the arguments or from stdin, one per line.
Errors (a missing or foreign model folder, empty input, only unknown words, binary input) are printed
as one `error: ...` line and the exit code is 2; nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnlab.errors import DataError, RnnlabError, user_os_error


def check_text(text: str) -> str:
    """The input stripped; DataError for empty text or control characters / binary data."""
    text = text.strip()
    if not text:
        raise DataError("empty input: give a sentence, e.g. \"I like tea.\"")
    if "\x00" in text or any(not ch.isprintable() for ch in text):
        raise DataError(f"input contains control characters or binary data ({text[:30]!r}); give plain text")
    return text


def model_family(model_dir: Path):
    """The registered family of a trained model folder (from its model.json)."""
    from rnnlab import tasks
    from rnnlab.io import read_model_info

    return tasks.get(str(read_model_info(model_dir)["family"]))


def read_inputs(given: list[str]) -> list[str]:
    """The inputs given as arguments, else the non-empty lines of stdin (UTF-8)."""
    if given:
        return given
    if sys.stdin.isatty():
        raise DataError("no input given: pass one as an argument or pipe lines on stdin")
    raw = sys.stdin.buffer.read()
    try:
        lines = [line for line in raw.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise DataError("stdin is not UTF-8 text; pipe plain UTF-8 text, one input per line") from None
    if not lines:
        raise DataError("stdin held no input; pipe one input per line")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--model", type=Path)
    known, _ = first.parse_known_args(argv)
    parser = argparse.ArgumentParser(description="Run a trained rnnlab model (any family) on new input.")
    parser.add_argument("inputs", nargs="*", help="inputs, e.g. sentences (default: read stdin lines)")
    parser.add_argument("--model", required=True, type=Path, help="a trained model folder, "
                        "models/<family>/<dataset>/<variant>")
    try:
        family = model_family(known.model) if known.model is not None else None
        if family is not None:
            family.add_predict_arguments(parser)
        args = parser.parse_args(argv)
        for line in family.predict(args.model, read_inputs(args.inputs), args):
            print(line)
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if user_os_error(err) is None:
            raise
        print(f"error: {user_os_error(err)}", file=sys.stderr)
        return 2
    return 0
