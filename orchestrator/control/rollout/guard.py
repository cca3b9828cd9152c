"""A rollout owns the pointers it moves: ``promote``, ``rollback`` and ``sync`` refuse to move a
channel while a rollout is active in the configured state store.

Without the refusal, an operator's move during a rollout is undone by the rollout's own rollback
(or the rollout judges a version it did not deploy). The check reads the state store of the
configuration the command was given (``--config``, or the default one); a command run without a
configuration (``--bucket`` URIs only) has no state store to read and cannot see a rollout: the
rollout's rollback then moves back only the pointers that still name its version
(:mod:`orchestrator.control.rollout.runner`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from orchestrator.control.rollout.record import is_active
from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.control.config import Config

__all__ = ["RolloutInProgress", "refuse_during_rollout"]


class RolloutInProgress(ConfigError):
    """A channel move refused because a rollout is active (exit 2, naming the rollout)."""


def refuse_during_rollout(config: Config | None, what: str, *, model: str, channel: str) -> None:
    """Raise :class:`RolloutInProgress` naming the rollout when the configured state store holds
    an active one (``running`` or ``rolling-back``) of ``model`` on ``channel`` (another channel, e.g. a
    CANDIDATE nothing serves, is not the rollout's to own); nothing without a configuration, or when
    the state is a SQLite file that does not exist yet (no rollout ever ran there). Errors of the
    store as it raises them (a corrupt record refuses too: it cannot be shown no rollout is
    active)."""
    if config is None:
        return
    location = config.state.path
    if "://" not in location or location.startswith("file://"):
        path = urlsplit(location).path if location.startswith("file://") else location
        if not Path(path).exists():
            return
    from orchestrator.control.wiring import open_store

    store = open_store(config)
    try:
        record = store.atomically(store.rollout)
    finally:
        store.close()
    if is_active(record):
        assert record is not None
        if record.get("model") != model or record.get("channel") != channel:
            return
        raise RolloutInProgress(
            f"{what} refused: rollout {record.get('id')} of {record.get('model')} "
            f"{record.get('version')} is {record.get('status')} (stage {record.get('stage')}, "
            f"{record.get('phase')}) in {location}; wait for it or run `orchestrator rollout --abort`"
        )
