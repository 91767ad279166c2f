"""Atomic outputs: everything is written under a temporary name and renamed when complete,
so a killed stage never leaves a file or folder that looks finished."""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator


# Fault injection for tests: with RNNLAB_KILL_BEFORE_COMMIT set to a glob pattern, a process SIGKILLs
# itself just before renaming an output whose path matches it: the worst moment for a kill (all work done,
# nothing committed). tests/test_pipeline_faults.py uses it to kill each DVC stage.
KILL_ENV = "RNNLAB_KILL_BEFORE_COMMIT"


def _maybe_killed_before_commit(final: Path) -> None:
    pattern = os.environ.get(KILL_ENV)
    if pattern and fnmatch.fnmatch(str(final), pattern):
        os.kill(os.getpid(), signal.SIGKILL)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(path: Path) -> None:
    """Temporary siblings left by a killed process (`.<name>.tmp-<pid>-...` whose pid is gone)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = stale.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _tmp_sibling(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder next to `final`; on success it replaces `final`.

    On any exception the temporary folder is removed and `final` is left untouched.
    """
    final = Path(final)
    tmp = _tmp_sibling(final)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _maybe_killed_before_commit(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None and old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old is not None:
        old.unlink()


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success it is renamed to `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _maybe_killed_before_commit(final)
    os.replace(tmp, final)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (sorted keys, 2-space indent, trailing newline)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_utf8(path: str | os.PathLike, what: str = "text file") -> str:
    """The text of a UTF-8 file; another encoding is a DataError naming the byte and the fix."""
    from rnnlab.errors import DataError

    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path} ({what}) is not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} is not valid "
            "UTF-8. Convert the file, e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8` (use the file's real "
            "encoding), and point the config at the converted file.") from None


def load_weights(path: str | os.PathLike, model=None) -> dict:
    """A state dict loaded with `weights_only=True` (tensors and plain containers, never arbitrary pickled
    objects), loaded into `model` when given; a file that is not such a state dict, or whose tensors do not
    fit the model (another task, vocabulary or architecture), is a DataError."""
    import pickle

    import torch

    from rnnlab.errors import DataError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path} is not a readable weights file ({first}). rnnlab loads weights with "
                        "weights_only=True, so files holding other Python objects are refused; re-create it "
                        "by re-running the train stage.") from None
    if model is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            detail = " ".join(str(err).split())[:400]
            raise DataError(f"the weights in {path} do not fit the model described beside them (another task, "
                            f"vocabulary or architecture?): {detail}. Re-run the train stage for this "
                            "configuration.") from None
    return state


def read_model_info(model_dir: str | os.PathLike, required: tuple[str, ...] = ("family", "model"),
                    family: str | None = None) -> dict:
    """A trained model folder's model.json as a dict holding `required` (checked after `family`, when given:
    a model of another family is named as such); anything else is a DataError (a missing folder, a file
    given instead of the folder, a damaged or truncated model.json)."""
    from rnnlab.errors import DataError

    model_dir = Path(model_dir)
    if model_dir.is_file():
        hint = (f"; use --model {model_dir.parent}" if (model_dir.parent / "model.json").is_file() else "")
        raise DataError(f"{model_dir} is a file: give the model folder (models/<family>/<dataset>/<variant>), "
                        f"not a file inside it{hint}")
    if not model_dir.is_dir():
        raise DataError(f"model folder {model_dir} does not exist. Train one with `dvc repro` (it writes "
                        "models/<family>/<dataset>/<variant>) or pipelines/train.py")
    path = model_dir / "model.json"
    if not path.is_file():
        raise DataError(f"{model_dir} is not a trained model folder: model.json missing")
    try:
        info = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is damaged ({type(err).__name__}: {' '.join(str(err).split())[:120]}); re-run "
                        "the train stage to write the model folder again") from None
    if family is not None and isinstance(info, dict) and info.get("family", family) != family:
        raise DataError(f"{model_dir} holds a model of family {info['family']!r}, not {family}; pass a folder "
                        f"under models/{family}/")
    missing = [k for k in required if not isinstance(info, dict) or k not in info]
    if missing:
        raise DataError(f"{path} is damaged: it lacks {', '.join(missing)}; re-run the train stage to write the "
                        "model folder again")
    return info


def load_tokenizer(path: str | os.PathLike):
    """A Hugging Face `tokenizers` file; a damaged or foreign one is a DataError."""
    from tokenizers import Tokenizer

    from rnnlab.errors import DataError

    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises bare Exception for a bad file
        raise DataError(f"{path} is not a readable tokenizer file ({' '.join(str(err).split())[:120]}); re-run "
                        "the stage that wrote it (tokenize, or train for a model folder)") from None


def build_from_info(build, model_dir: str | os.PathLike, *args, **kwargs):
    """`build(*args, **kwargs)` for a model folder's model.json values; values it cannot build from (a key
    missing from its `model` section, a wrong type) are a DataError naming the folder."""
    from rnnlab.errors import DataError

    try:
        return build(*args, **kwargs)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{Path(model_dir) / 'model.json'} does not describe a model this code can build "
                        f"({type(err).__name__}: {err}); re-run the train stage to write the folder again") from None


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """torch.save through an in-memory buffer: a full disk is then an OSError (ENOSPC) from the plain file
    write, where torch's own zip writer would report an opaque RuntimeError ('unexpected pos ...')."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with open(path, "wb") as handle:
        handle.write(buffer.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())
