"""Errors with one-line messages that name what the user must change.

Every class here is a ``LexlmError``: the command line (``python -m lexlm.run`` /
``lexlm.evaluate``) prints its message as one line on stderr and exits with status 2, so a
user error never ends in a traceback.
"""


class LexlmError(Exception):
    """A problem the user can fix; the message is one line that says what to change."""


class ConfigError(LexlmError, ValueError):
    """A configuration value is invalid. The message starts with the field's dotted name."""

    def __init__(self, field: str, message: str | None = None):
        if message is None:  # rebuilt from its text (a copy, a pickle): "field: message"
            field, _, message = field.partition(": ")
        self.field = field
        super().__init__(f"{field}: {message}")


class DataError(LexlmError, ValueError):
    """Input data that cannot be used as it is (a score out of range, too few examples).
    The message names the file or split and the config field that chose it."""


class TrainingError(LexlmError, RuntimeError):
    """Training cannot go on (for example a non-finite loss)."""


class CheckpointError(LexlmError, RuntimeError):
    """A checkpoint is missing, unreadable or does not match the model."""


class StaleResultError(LexlmError):
    """A saved result (a run, an evaluation, a tokenizer) was made by another config. The
    message names the differing fields; nothing was moved or overwritten."""


class WorkdirBusyError(LexlmError):
    """Another process is running in the same workdir."""


class FontError(LexlmError, ValueError):
    """A font's glyph metrics cannot be used (a negative or oversized advance, a pair kerning
    beyond one em). The message names the font file and the glyph."""
