"""The project's exception tree: every error a user can see is one of these.

    OrchestratorError            base; ``str(err)`` is a complete message for a human
    ├── ConfigError              a configuration file or option is wrong (names the key)
    ├── DatasetError             training data is unusable (orchestrator.training.datasets)
    ├── GateError                a trained model is below the metric gate (orchestrator.training.gate)
    ├── ChallengerRefused        significantly worse than the champion; exit 5 (orchestrator.training.gate)
    ├── ArtifactError            an artifact failed verification (names the file)
    ├── LeaseHeld                another health job holds the job lease    (orchestrator.control.errors)
    └── StorageError             a storage backend failed (names the URI)
        ├── NotFound             object or bucket does not exist           (never retried)
        ├── PermissionDenied     credentials lack access                   (never retried)
        ├── PreconditionFailed   a conditional write lost a race           (never retried)
        │   └── StateConflict    a state transaction could not commit      (orchestrator.control.errors)
        ├── StateCorrupt         the state holds what no orchestrator wrote (orchestrator.control.errors)
        └── TransientError       timeouts, throttling, 5xx                 (retried with backoff)

The CLI maps them to a message on stderr and a non-zero exit code; nothing else catches ``Exception``.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ConfigError",
    "NotFound",
    "OrchestratorError",
    "PermissionDenied",
    "PreconditionFailed",
    "StorageError",
    "TransientError",
]


class OrchestratorError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code = 1


class ConfigError(OrchestratorError):
    """A configuration file, stack output or command-line option is invalid."""

    exit_code = 2


class ArtifactError(OrchestratorError):
    """An artifact is missing a file, or a file does not match its manifest."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class StorageError(OrchestratorError):
    """A storage operation failed; ``uri`` names the object or bucket at fault."""

    def __init__(self, message: str, *, uri: str | None = None) -> None:
        self.uri = uri
        super().__init__(f"{uri}: {message}" if uri else message)


class NotFound(StorageError):
    """The object, bucket or container does not exist."""


class PermissionDenied(StorageError):
    """The credentials in use may not perform this operation."""


class PreconditionFailed(StorageError):
    """A conditional write or read found a different version than expected."""


class TransientError(StorageError):
    """A failure that may succeed on retry: timeouts, throttling, server errors, lost connections."""
