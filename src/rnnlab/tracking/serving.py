"""What the logged MLflow model (rnnlab/tracking/pyfunc_model.py) accepts and answers, for every family:

- input: texts, a list of strings or a one-column DataFrame (column `text`, or any name);
- output: one string per input, the lines `pipelines/predict.py` prints for it, joined by newlines;
- params: the family's predict options (`beam`, `top_k`, `no_attention`, ...) under their argparse names,
  except those naming files on the serving machine (`--heatmap`, `--database`), which a client of
  `mlflow models serve` must not choose.

Anything else (a number, a null, an empty or binary text, a value outside an option's choices) is refused
with an MlflowException of INVALID_PARAMETER_VALUE, which `mlflow models serve` answers with HTTP 400 and the
message, and `mlflow.pyfunc` raises as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

INPUT_COLUMN = "text"


def predict_parser(family) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    family.add_predict_arguments(parser)
    return parser


FLAGS = (argparse._StoreTrueAction, argparse._StoreFalseAction)


def served_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The family's options a served model takes as params: flags and single values, but none that names a
    file (or takes a list)."""
    return [a for a in parser._actions if a.option_strings and a.type is not Path and
            (isinstance(a, FLAGS) or (type(a) is argparse._StoreAction and a.nargs is None))]


def _dtype(action: argparse.Action) -> str:
    if isinstance(action, FLAGS):
        return "boolean"
    return {int: "long", float: "double"}.get(action.type, "string")


def signature(family):
    """The model's signature: one string column in, one string out, the served options as params."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    params = [ParamSpec(a.dest, _dtype(a), a.default) for a in served_options(predict_parser(family))]
    # The input column is unnamed: MLflow then takes a plain list of texts (`predict(["..."])`, JSON
    # `{"inputs": [...]}`) as well as a one-column DataFrame, whatever the column's name.
    return ModelSignature(inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]),
                          params=ParamSchema(params) if params else None)


def input_example(family) -> list[str] | None:
    return [family.predict_example] if family.predict_example else None


def input_texts(model_input: Any) -> list[str]:
    """The texts of a pyfunc input (DataFrame, Series, array, list or one string); DataError for anything that
    is not a non-empty list of strings."""
    from rnnlab.errors import DataError

    if isinstance(model_input, str):
        values = [model_input]
    elif hasattr(model_input, "columns"):  # a DataFrame
        if INPUT_COLUMN in model_input.columns:
            values = model_input[INPUT_COLUMN].tolist()
        elif len(model_input.columns) == 1:
            values = model_input.iloc[:, 0].tolist()
        else:
            raise DataError(f"the input has columns {list(model_input.columns)}; give one column "
                            f"{INPUT_COLUMN!r} with one text per row")
    elif hasattr(model_input, "tolist"):  # a Series or an array
        values = model_input.tolist()
    elif isinstance(model_input, (list, tuple)):
        values = list(model_input)
    else:
        raise DataError(f"the input is a {type(model_input).__name__}; give texts: a list of strings or a "
                        f"DataFrame with a {INPUT_COLUMN!r} column")
    if not values:
        raise DataError(f"the input holds no text; give at least one, e.g. {{\"inputs\": [\"I like tea.\"]}}")
    wrong = [(i, v) for i, v in enumerate(values) if not isinstance(v, str)]
    if wrong:
        i, v = wrong[0]
        raise DataError(f"input {i} is {v!r} ({type(v).__name__}), not a text; every input must be a string")
    return values


def options(parser: argparse.ArgumentParser, params: dict | None) -> argparse.Namespace:
    """The family's predict options: its defaults, overridden by the served params (checked against the choices
    an option has). Unknown names and file options are refused."""
    from rnnlab.errors import DataError

    served = {a.dest: a for a in served_options(parser)}
    args = vars(parser.parse_args([]))
    for name, value in (params or {}).items():
        if name not in served:
            allowed = ", ".join(sorted(served)) or "none"
            raise DataError(f"unknown param {name!r}; this model takes: {allowed}")
        action = served[name]
        if value is None:  # a null param means the option's default
            value = action.default
        if value is not None and action.choices is not None and value not in action.choices:
            raise DataError(f"param {name}={value!r}; allowed: {', '.join(map(str, action.choices))}")
        args[name] = value
    return argparse.Namespace(**args)


def serve_command(model_uri: str, host: str = "127.0.0.1", port: int = 5001, workers: int = 1) -> list[str]:
    """`mlflow models serve` of a logged or registered rnnlab model in this Python environment."""
    import shutil
    import sys

    mlflow_cli = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    return [mlflow_cli, "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", host, "-p", str(port),
            "-w", str(workers)]


def start_server(model_uri: str, tracking_uri: str, port: int, host: str = "127.0.0.1", timeout: float = 120.0,
                 log_path: Path | None = None):
    """Start `mlflow models serve` on host:port (its own process group, output to `log_path`) and wait until
    its /ping answers; a RuntimeError with the server's last output if it exits or stays silent."""
    import os
    import subprocess
    import time
    import urllib.request

    import sys

    # MLflow starts uvicorn by name: this environment's bin folder goes first on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri}
    log = open(log_path, "w+b") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed by stop_server
    proc = subprocess.Popen(serve_command(model_uri, host, port), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    proc.log = log
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    output = Path(log_path).read_text(errors="replace")[-3000:] if log_path else "(no log kept)"
    raise RuntimeError(f"mlflow models serve -m {model_uri} did not answer on {host}:{port} within {timeout:.0f} s "
                       f"(exit code {proc.returncode}); its output:\n{output}")


def stop_server(proc) -> None:
    """Stop a server started by start_server, with every process it started."""
    import os
    import signal
    import subprocess

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    log = getattr(proc, "log", None)
    if log not in (None, subprocess.DEVNULL):
        log.close()
