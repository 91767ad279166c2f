"""Serve a family's registered model over HTTP with MLflow's own server (`mlflow models serve`), on 127.0.0.1:

    python pipelines/serve.py --family F [--alias champion] [--port 5001] [--host 127.0.0.1]   (or: make serve FAMILY=F)
    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' -d '{"inputs": ["some text"]}'

The model is `models:/rnnlab-<family>-<dataset>@<alias>` of the project's MLflow store (params.yaml's
tracking_uri and the family's data set), registered by the family's report stage. Each answer is what
`pipelines/predict.py` prints for that input; bad input gets HTTP 400 with the reason
(src/rnnlab/tracking/serving.py). The server runs in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys

from rnnlab.errors import RnnlabError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a family's registered rnnlab model with mlflow models serve.")
    parser.add_argument("--family", required=True, help="the task family whose registered model to serve")
    parser.add_argument("--alias", default="champion", help="the registry alias (default: champion)")
    parser.add_argument("--params", default="params.yaml", help="the composed parameters (default: params.yaml)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001)
    a = parser.parse_args(argv)
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        from rnnlab.config import load_params
        from rnnlab.tracking.serving import serve_command

        cfg = load_params(a.params, [f"family={a.family}"])
        uri, name = str(cfg.tracking.tracking_uri), str(cfg.tracking.registered_model)
        try:
            version = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(name, a.alias)
        except MlflowException:
            raise RnnlabError(f"no model {name}@{a.alias} in {uri}: run `dvc repro {a.family}_report` (it registers "
                              "the best variant as champion), or name another --alias") from None
    except RnnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = serve_command(f"models:/{name}@{a.alias}", a.host, a.port)
    print(f"serving {name} version {version.version} (@{a.alias}) on http://{a.host}:{a.port}/invocations", flush=True)
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])  # uvicorn, by name
    os.execvpe(command[0], command, {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri})


if __name__ == "__main__":
    raise SystemExit(main())
