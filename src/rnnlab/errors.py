"""Errors that the entry points turn into a clear one-paragraph message (no stack trace)."""


class RnnlabError(Exception):
    """Base class: something the user can fix (config, data, environment)."""


class ConfigError(RnnlabError):
    """A configuration value is unknown, out of range or of the wrong type."""


class DataError(RnnlabError):
    """Input data is missing, empty, malformed or inconsistent."""
