"""The one exception type users see: a message meant to be printed on one line."""


class AevbError(Exception):
    """Bad input or state that the user can fix; the CLI prints it and exits non-zero."""


class DataError(AevbError):
    """A data file or dataset that cannot be read, or does not fit the model."""


class CheckpointError(AevbError):
    """A run directory or checkpoint that is missing, corrupt, or from an unknown version."""


class DivergedError(AevbError):
    """Training met a NaN or inf loss or gradient (and was not asked to skip such steps)."""

    def __init__(self, message: str, step: int, what: str):
        super().__init__(message)
        self.step, self.what = step, what


class OutOfMemory(AevbError):
    """An allocation failed (CPU or GPU memory); the message says what was being allocated and how much."""
