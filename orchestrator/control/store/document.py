"""The object-store state document: its sections, and reading one back strictly.

:class:`Document` holds the sections in their stored (JSON) form; :func:`decode` parses and checks
a stored document (schema :data:`DOCUMENT_SCHEMA_VERSION`, or 1, read as 2), so that a malformed
one is refused once, with its location and the key at fault
(:class:`~orchestrator.control.errors.StateCorrupt`), instead of surfacing as a confusing error in
some later command. :mod:`.objectstore` owns the
transactions over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

import orjson

from orchestrator.control.errors import StateCorrupt
from orchestrator.control.store.base import (
    DesiredWeights,
    Override,
    check_cloud,
    check_weights,
    parse_backend,
    parse_lease,
)
from orchestrator.control.types import Flip, HealthState
from orchestrator.core.errors import StorageError

__all__ = [
    "DOCUMENT_KIND",
    "DOCUMENT_SCHEMA_VERSION",
    "SECTIONS",
    "Document",
    "Section",
    "decode",
    "desired_from_row",
    "flip_from_row",
    "json_copy",
    "override_from_row",
]

# Written in every document and checked on reading: a JSON object at the state location that
# lacks it is something else, never read as an empty state.
DOCUMENT_KIND = "orchestrator-state"
# 3: the ``rollouts`` section (issue 17); a schema-2 document is read with no rollout.
DOCUMENT_SCHEMA_VERSION = 3

J = TypeVar("J")

# The document's sections: what a transaction reads and writes, and what StateConflict names.
Section = Literal["flips", "overrides", "desired_weights", "machines", "backends", "leases", "rollouts"]
SECTIONS: tuple[Section, ...] = get_args(Section)


@dataclass(slots=True)
class Document:
    """The document's sections in their stored (JSON) form; the envelope is added on encoding."""

    version: int = 0
    flips: list[dict[str, Any]] = field(default_factory=list)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    desired_weights: list[dict[str, Any]] = field(default_factory=list)
    machines: dict[str, dict[str, Any]] = field(default_factory=dict)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def copy(self) -> Document:
        """A deep copy (what a transaction works on)."""
        return Document(
            self.version,
            json_copy(self.flips),
            json_copy(self.overrides),
            json_copy(self.desired_weights),
            json_copy(self.machines),
            json_copy(self.backends),
            json_copy(self.leases),
            json_copy(self.rollouts),
        )

    def section(self, name: Section) -> object:
        """One section by name, to compare it between two versions of the document."""
        value: object = getattr(self, name)
        return value


def decode(data: bytes, uri: str) -> Document:  # noqa: PLR0912  # one check per section
    """Parse and check a stored document; StorageError naming ``uri`` if it is not one we can use."""
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise StorageError(
            f"the state document is not JSON ({exc}); restore it or choose another location", uri=uri
        ) from exc
    if not isinstance(raw, dict) or raw.get("kind") != DOCUMENT_KIND:
        raise StorageError(
            f"not an orchestrator state document (its kind is not {DOCUMENT_KIND!r}); "
            "choose another state location",
            uri=uri,
        )
    schema = raw.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise StorageError(f"the state document has no valid schema version ({schema!r})", uri=uri)
    if schema > DOCUMENT_SCHEMA_VERSION:
        raise StorageError(
            f"state schema version {schema} is newer than this orchestrator understands "
            f"({DOCUMENT_SCHEMA_VERSION}); upgrade the orchestrator",
            uri=uri,
        )
    if schema == 1:  # applied_weights became desired_weights; backends and leases are new
        raw = {**raw, "desired_weights": raw.get("applied_weights"), "backends": {}, "leases": {}}
    if "rollouts" not in raw:  # new in schema 3: a document without it has no rollout
        raw = {**raw, "rollouts": {}}
    key = "(document)"
    try:
        document = Document(version=_integer(raw["version"]))
        for key in ("flips", "desired_weights"):
            setattr(document, key, _list_of_dicts(raw[key]))
        for key in ("overrides", "machines", "backends", "leases", "rollouts"):
            setattr(document, key, _dict_of_dicts(raw[key]))
        # Convert every entry once, as reads will: a malformed one is reported now, with the
        # document's location and the key, instead of as a confusing error in some later command.
        for index, row in enumerate(document.flips):
            key = f"flips[{index}]"
            flip_from_row(row)
        for cloud, row in document.overrides.items():
            key = f"overrides.{cloud}"
            override_from_row(cloud, row)
        for index, row in enumerate(document.desired_weights):
            key = f"desired_weights[{index}]"
            desired_from_row(row)
        for cloud, row in document.machines.items():
            key = f"machines.{cloud}"
            check_cloud(cloud)
            _dict(row["state"])
            _number(row["updated_at"])
        for location, row in document.backends.items():
            key = f"backends.{location}"
            parse_backend(location, row)
        for name, row in document.leases.items():
            key = f"leases.{name}"
            parse_lease(name, row)
    except (KeyError, TypeError, ValueError) as exc:
        raise StateCorrupt(
            f"malformed state document at {key}: {type(exc).__name__}: {exc}", uri=uri
        ) from exc
    return document


def flip_from_row(row: Mapping[str, Any]) -> Flip:
    """A stored flip; KeyError, TypeError or ValueError when the row is malformed."""
    return Flip(
        cloud=check_cloud(row["cloud"]),
        at=_number(row["at"]),
        old=HealthState(row["old"]),
        new=HealthState(row["new"]),
        reason=_text(row["reason"]),
        actor=_text(row["actor"]),
        details=json_copy(_dict(row["details"])),
    )


def override_from_row(cloud: str, row: Mapping[str, Any]) -> Override:
    """A stored override of ``cloud``; KeyError, TypeError or ValueError when malformed."""
    drained = row["drained"]
    if not isinstance(drained, bool):
        raise TypeError(f"override of {cloud}: drained must be true or false, not {drained!r}")
    return Override(
        cloud=check_cloud(cloud),
        drained=drained,
        reason=_text(row["reason"]),
        actor=_text(row["actor"]),
        at=_number(row["at"]),
    )


def desired_from_row(row: Mapping[str, Any]) -> DesiredWeights:
    """A stored decision; KeyError, TypeError or ValueError when malformed."""
    return DesiredWeights(
        weights=check_weights(_dict(row["weights"])), at=_number(row["at"]), reason=_text(row["reason"])
    )


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, not {value!r}")
    return value


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, not {value!r}")
    return float(value)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, not {value!r}")
    return value


def _dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, not {value!r}")
    return value


def _list_of_dicts(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, not {type(value).__name__}")
    return [_dict(item) for item in value]


def _dict_of_dicts(value: object) -> dict[str, dict[str, Any]]:
    return {key: _dict(item) for key, item in _dict(value).items()}


def json_copy(value: J) -> J:
    """A deep copy through JSON: also checks that ``value`` can be stored at all (TypeError)."""
    copied: J = orjson.loads(orjson.dumps(value))
    return copied
