"""Errors that the entry points turn into a clear one-paragraph message (no stack trace)."""


class RnnlabError(Exception):
    """Base class: something the user can fix (config, data, environment)."""


class ConfigError(RnnlabError):
    """A configuration value is unknown, out of range or of the wrong type."""


class DataError(RnnlabError):
    """Input data is missing, empty, malformed or inconsistent."""


# Operating-system errors a user fixes (space, permissions, a read-only mount): reported like RnnlabError.
USER_OS_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "ENAMETOOLONG"}


def user_os_error(err: BaseException) -> str | None:
    """The one-line message for an OSError the user can fix (disk full, read-only or forbidden path), else None.
    rnnlab writes every output atomically (temporary name, then rename), so such a failure leaves no half file."""
    import errno

    if not isinstance(err, OSError) or errno.errorcode.get(err.errno or -1) not in USER_OS_ERRNOS:
        return None
    where = f" ({err.filename})" if err.filename else ""
    advice = {errno.ENOSPC: "free some space or point the outputs elsewhere",
              errno.EDQUOT: "free some space or point the outputs elsewhere",
              errno.EROFS: "the file system is read-only: point the outputs at a writable folder"}.get(
        err.errno, "point the outputs at a folder you can write")
    return (f"cannot write{where}: {err.strerror or err}; {advice}. Nothing half-written was left behind "
            "(outputs are written under a temporary name and renamed when complete).")
