"""The one exception type users see: a message meant to be printed on one line."""


class AevbError(Exception):
    """Bad input or state that the user can fix; the CLI prints it and exits non-zero."""


class DataError(AevbError):
    """A data file or dataset that cannot be read, or does not fit the model."""


class CheckpointError(AevbError):
    """A run directory or checkpoint that is missing, corrupt, or from an unknown version."""
