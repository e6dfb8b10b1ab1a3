"""The exceptions tasker raises.

Every error says what was wrong and what is expected instead. None of them ever contains a
database password: messages that mention a connection go through :func:`mask_url`.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseError",
    "RegistrationError",
    "RunEndedError",
    "SchemaVersionError",
    "TaskerError",
    "TaskerWarning",
    "UnknownRunError",
    "UnknownSubtaskError",
    "ValidationError",
]


class TaskerError(Exception):
    """Base class of every error raised by tasker."""


class ConfigError(TaskerError):
    """The configuration (arguments, environment variables or a YAML file) is invalid."""


class ValidationError(TaskerError, ValueError):
    """An argument to a tasker call has a value tasker cannot accept."""


class RegistrationError(ValidationError):
    """A task registration (a dict, a DataFrame row, a YAML or CSV file) is malformed."""


class UnknownRunError(TaskerError, LookupError):
    """A run id that no run in the database has, or no current run where one is needed."""


class UnknownSubtaskError(TaskerError, LookupError):
    """A subtask number that the run does not have."""


class RunEndedError(TaskerError):
    """A run (or subtask) that has ended already was asked to end again: refused, the first
    ending kept."""


class DatabaseError(TaskerError):
    """The database could not be reached or refused an operation.

    ``unavailable`` is True when the database could not be reached or was busy (down,
    unreachable, locked, full, refusing the login), as opposed to refusing what was sent.
    ``in_doubt`` is True when a write's COMMIT went out and its answer was lost with the
    connection: the write may have been committed.
    """

    def __init__(self, message: str, *, unavailable: bool = False) -> None:
        super().__init__(message)
        self.unavailable = unavailable
        self.in_doubt = False


class SchemaVersionError(DatabaseError):
    """The database holds a tasker schema of a version this tasker cannot use."""


class TaskerWarning(UserWarning):
    """Something was stored differently from how it was given (e.g. truncated)."""
