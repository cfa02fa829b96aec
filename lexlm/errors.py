"""Errors with one-line messages that name what the user must change."""


class ConfigError(ValueError):
    """A configuration value is invalid. The message starts with the field's dotted name."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not match the model."""
