"""Exceptions that carry a one-line, user-facing message."""


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the key, the value and what is accepted."""


class InputError(ValueError):
    """A tensor handed to the engine has the wrong shape, dtype or values."""


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing. The message names the path looked at, the files expected and how to get them."""
