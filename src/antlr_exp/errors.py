"""Exceptions that carry a one-line, user-facing message."""


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the key, the value and what is accepted."""


class InputError(ValueError):
    """A tensor handed to the engine has the wrong shape, dtype or values."""


class DatasetNotFoundError(FileNotFoundError):
    """Dataset files are missing. The message names the path looked at, the files expected and how to get them."""


class RunStopped(RuntimeError):
    """A run stopped before its end (a signal, a non-finite number, a checkpoint that could not be
    written). The message says why, in one line; the last checkpoint written is intact."""


class StopSignal(RunStopped):
    """SIGTERM, or SLURM's warning before a time limit (SIGUSR1, SIGUSR2): a checkpoint was saved."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class NonFiniteError(RunStopped):
    """The loss or a weight became inf or NaN during training; nothing non-finite was saved."""


class CheckpointWriteError(RunStopped):
    """A checkpoint could not be written (a full disk, no permission); the previous one is intact."""


#: Errors that are the user's to fix: the commands print their one-line message, no traceback.
USER_ERRORS = (ConfigError, InputError, DatasetNotFoundError)
