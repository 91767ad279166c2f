"""Which trained models the explorer offers, per task family: the registry's `champion` of the family's
default data set (what the last `dvc repro` chose), every model folder under models/<family>/<dataset>/,
and whatever the user names (`--model FAMILY=REF`, REF a folder, `models:/<name>@<alias>` or
`models:/<name>/<version>`). Loaded models are kept, so each is read once."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from rnnlab.errors import ConfigError, DataError


@dataclass
class ModelRef:
    family: str
    label: str  # what the page shows, e.g. "gru-additive (champion)"
    path: Path  # the model folder (a registered version resolves to its logged copy)


@dataclass
class FamilyModels:
    family: str
    dataset: str
    models: list[ModelRef] = field(default_factory=list)  # the default first
    missing: str | None = None  # why there is none, and the command that trains one

    @property
    def default(self) -> ModelRef | None:
        return self.models[0] if self.models else None

    def find(self, label: str) -> ModelRef:
        for ref in self.models:
            if ref.label == label:
                return ref
        raise DataError(f"no {self.family} model {label!r}; choose one of: {', '.join(r.label for r in self.models)}")


def registered_folder(uri: str, tracking_uri: str) -> Path:
    """The model folder of a registered version (`models:/<name>@<alias>`, `models:/<name>/<version>`): MLflow
    loads the logged rnnlab pyfunc model, which names its local copy of the folder (nothing is unpickled)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as err:
        raise DataError(f"cannot load {uri} from {tracking_uri}: {str(err).splitlines()[0][:200].rstrip('.')}. "
                        "List the registered models on the MLflow dashboard (make ui)") from None
    return Path(loaded.unwrap_python_model().model_dir)


def family_models(cfg: DictConfig, family: str, root: Path, choices: list[str] | None = None) -> FamilyModels:
    """The models the explorer offers for `family` (cfg: the composed params.yaml, its family subtree)."""
    from rnnlab.predict import model_family

    sub = cfg[family]
    dataset = str(sub.data.name)
    found = FamilyModels(family, dataset)
    tracking_uri = str(cfg.tracking.tracking_uri)
    for ref in choices or []:  # the user's own, first: the first is the default
        path = registered_folder(ref, tracking_uri) if ref.startswith("models:/") else Path(ref)
        if model_family(path).name != family:  # also reads model.json: a clear error for a non-model folder
            raise ConfigError(f"--model {family}={ref}: that is a {model_family(path).name} model")
        found.models.append(ModelRef(family, f"{ref}", path))
    folders = sorted(p for p in (root / str(cfg.paths.models) / family / dataset).glob("*") if (p / "model.json").is_file())
    champion = None
    if not choices:
        champion = _champion(str(sub.tracking.registered_model), tracking_uri, folders)
    for path in folders:
        label = path.name + (" (champion)" if champion is not None and path == champion else "")
        found.models.append(ModelRef(family, label, path))
    if champion is not None:  # the champion first: the page's default
        found.models.sort(key=lambda r: not r.label.endswith("(champion)"))
    if not found.models:
        found.missing = (f"No trained {family} model on {dataset} yet. Train the family's grid with "
                         f"`make repro-{family}` (or `dvc repro {family}_report`), then restart the explorer.")
    return found


def _champion(registered: str, tracking_uri: str, folders: list[Path]) -> Path | None:
    """The local folder of the registry's champion: its run's model folder (the version's description names
    the variant, e.g. "anki_spa_eng gru-additive (val_bleu ...)"); None without a store, model or alias."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///"):]).is_file():
        return None  # no store yet: never create one just to look
    try:
        version = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).get_model_version_by_alias(
            registered, "champion")
    except MlflowException:
        return None
    words = set((version.description or "").split())
    return next((path for path in folders if path.name in words), None)


class ModelCache:
    """Loaded models by folder, each loaded once (thread-safe: the page serves requests in threads)."""

    def __init__(self, loaders: dict):
        self.loaders, self._models, self._lock = loaders, {}, threading.Lock()

    def get(self, ref: ModelRef):
        with self._lock:
            if ref.path not in self._models:
                try:
                    self._models[ref.path] = self.loaders[ref.family](ref.path)
                except OSError as err:
                    raise DataError(f"cannot read the model folder {ref.path}: {err}") from None
            return self._models[ref.path]
