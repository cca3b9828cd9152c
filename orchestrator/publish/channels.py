"""Moving a channel's pointer in every cloud to a version already published there: ``promote``,
``rollback`` and a rollout's stages, from the buckets alone (no local artifact).

A channel is the pointer file ``models/<name>/<CHANNEL>`` an endpoint follows (``LATEST`` by
default, or another such as ``STABLE``; :mod:`orchestrator.core.artifact.layout`). Moving it:

1. Verify the version in every target first, as ``verify --model NAME@VERSION`` does: its
   ``manifest.json`` present (the version is complete), every object it lists with the manifest's
   size and sha256 (from metadata, or with ``deep`` from the content), nothing else in the
   directory, the manifest's name and version the asked ones, and with a signature verifier a
   signature that verifies. One target failing refuses the whole move (:class:`VersionRefused`,
   exit 6) and nothing moves anywhere.
2. Then move each target's pointer with a conditional write on the token read (a lost race re-reads
   and decides again; if the pointer now names a third version, another writer moved it meanwhile and the
   move is reported failed with that conflict, never overwritten): its ``sequence`` + 1, the version it
   named pushed onto its ``history``, and ``moved_by`` recording who moved it. A pointer that
   already names the version with the verified manifest is left alone
   (``unchanged``): a re-run finishes what an interrupted one left.

The never-backwards rule: ``promote`` refuses a version in a target pointer's history (exit 6,
pointing at ``rollback --to``); ``rollback`` and a rollout's stages move back on purpose
(``allow_back``). :func:`rollback_version` finds the version to roll back to: the one every target
pointer names as its previous (``history[0]``), the same in every cloud; pointers a rollback moved
already count as done (a re-run finishes it), and a rollback right after a rollback is refused
(it would serve again the version just rolled back). A pointer's history never holds its current
version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.core.artifact.layout import MOVERS, Pointer, pointer_key, read_pointer, version_prefix
from orchestrator.core.artifact.manifest import MANIFEST_NAME, parse_manifest
from orchestrator.core.contract import POINTER
from orchestrator.core.errors import ConfigError, OrchestratorError, PreconditionFailed
from orchestrator.core.names import check_channel, check_version
from orchestrator.publish.sync import POINTER_ATTEMPTS, Target
from orchestrator.publish.verify import verify_version

if TYPE_CHECKING:
    from orchestrator.core.artifact.signing import SignatureVerifier

__all__ = [
    "EXIT_REFUSED",
    "ChannelResult",
    "TargetUnreachable",
    "VersionRefused",
    "current_versions",
    "move_channel",
    "rollback_version",
    "verified_everywhere",
]

# promote, rollback and rollout: the version asked for is not complete and verified in every target
# (or promote would move a pointer backwards); nothing moved. Next free code after the challenger's 5.
EXIT_REFUSED = 6


class VersionRefused(OrchestratorError):
    """The version cannot be moved to: incomplete, drifted or unsigned in a target, or (promote) in
    a pointer's history. Nothing moved anywhere. Exit :data:`EXIT_REFUSED`."""

    exit_code = EXIT_REFUSED


class TargetUnreachable(OrchestratorError):
    """A target's bucket could not be read (unreachable, access refused, out of retries), so the
    version could not be checked there; nothing moved anywhere. Exit 1 (an operation failed), not
    :data:`EXIT_REFUSED`: nothing is known to be wrong with the version."""


@dataclass
class ChannelResult:
    """One target's move: the channel, the version it names now, the one before, its sequence, and
    ``pointer`` ``moved`` or ``unchanged`` (or ``failed`` with ``error``, or ``left``: the move
    was asked only from a version the pointer no longer names, and it was left alone)."""

    target: str
    uri: str
    channel: str
    version: str
    previous: str | None = None
    sequence: int | None = None
    pointer: str = "failed"
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The pointer names the version now."""
        return self.pointer in ("moved", "unchanged")

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data, for ``--json``."""
        return {**self.__dict__, "ok": self.ok}


def move_channel(
    targets: Sequence[Target],
    name: str,
    version: str,
    *,
    channel: str = POINTER,
    moved_by: str,
    allow_back: bool = False,
    deep: bool = False,
    verifier: SignatureVerifier | None = None,
    only_from: str | None = None,
) -> list[ChannelResult]:
    """Move ``channel`` to ``version`` in every target (the module docstring's steps); one result
    per target, in order. With ``only_from`` (a rollout's rollback), a pointer is moved only while it
    names ``only_from``: one naming any other version was moved by someone else since, and is left
    alone (``left``, with the version it names as ``previous``). Raises :class:`VersionRefused`
    (nothing moved) when the version fails verification in a target, or ``allow_back`` is false and a
    target's pointer moved off it before; ConfigError for a name, version or channel outside the
    grammar. A target whose pointer could not be written is reported in its result (``failed``), the
    others are moved all the same."""
    if moved_by not in MOVERS:
        raise ValueError(f"moved_by must be one of {MOVERS}")
    check_version(version, where="version", error=ConfigError)
    check_channel(channel, where="--channel", error=ConfigError)
    if not targets:
        raise ConfigError("no target cloud: configure clouds.<cloud>.storage or pass --clouds")
    shas = verified_everywhere(targets, name, version, deep=deep, verifier=verifier)
    if not allow_back:
        for target in targets:
            pointer, _ = read_pointer(target.storage, name, channel)
            if pointer is not None and pointer.version != version and version in pointer.history:
                uri = target.storage.key_uri(pointer_key(name, channel))
                raise VersionRefused(
                    f"{target.name}: {uri} moved off {version} before (it names {pointer.version}); "
                    f"use `orchestrator rollback --to {version}`"
                )

    def one(target: Target) -> ChannelResult:
        return _move_one(
            target, name, version, shas[target.name], channel=channel, moved_by=moved_by, only_from=only_from
        )

    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="channel") as pool:
        return list(pool.map(one, targets))


def rollback_version(targets: Sequence[Target], name: str, *, channel: str = POINTER) -> str:
    """The version ``rollback`` moves ``channel`` to: the previous one (``history[0]``) of the
    version every target's pointer names. A rollback interrupted half way is finished by running
    it again: pointers it already moved (``moved_by: rollback``, naming that previous version, the
    version rolled back from as their ``history[0]``) count as done. ConfigError naming the target
    otherwise: a missing pointer, no history, clouds that disagree, or every pointer already moved
    by a rollback (a second rollback would re-deploy the version just rolled back: pass ``--to``)."""
    currents = current_versions(targets, name, channel=channel)
    for target in targets:
        if currents[target.name] is None:
            uri = target.storage.key_uri(pointer_key(name, channel))
            raise ConfigError(f"{target.name}: {uri} does not exist: nothing to roll back; pass --to VERSION")
    pointers = {t: p for t, p in currents.items() if p is not None}
    done = {t for t, p in pointers.items() if p.moved_by == "rollback" and p.history}
    # (from, to) per target: the move a rollback makes there, or made there already.
    moves = {
        t: ((p.history[0], p.version) if t in done else (p.version, p.history[0] if p.history else None))
        for t, p in pointers.items()
    }
    if len(set(moves.values())) > 1:
        shown = ", ".join(
            f"{t}: {p.version} (before: {p.history[0] if p.history else 'none'}"
            f"{', moved by a rollback' if t in done else ''})"
            for t, p in pointers.items()
        )
        raise ConfigError(f"the clouds' {channel} pointers disagree ({shown}); pass --to VERSION")
    for target in targets:
        pointer = pointers[target.name]
        if not pointer.history:
            uri = target.storage.key_uri(pointer_key(name, channel))
            raise ConfigError(
                f"{target.name}: {uri} records no previous version (it names {pointer.version}); "
                "pass --to VERSION"
            )
    rolled_from, to = next(iter(moves.values()))
    assert to is not None  # every pointer has a history (checked above)
    if len(done) == len(pointers):
        raise ConfigError(
            f"every cloud's {channel} was rolled back already (from {rolled_from} to {to}): rolling back "
            f"again would serve {rolled_from} again; pass --to VERSION to go further back"
        )
    return to


def current_versions(
    targets: Sequence[Target], name: str, *, channel: str = POINTER
) -> dict[str, Pointer | None]:
    """Each target's ``channel`` pointer (None where there is none), read concurrently; errors as
    the storage raises them, or ArtifactError for an unreadable pointer, naming the object."""
    with ThreadPoolExecutor(max_workers=max(1, len(targets)), thread_name_prefix="channel") as pool:
        pointers = list(pool.map(lambda t: read_pointer(t.storage, name, channel)[0], targets))
    return {t.name: p for t, p in zip(targets, pointers, strict=True)}


def verified_everywhere(
    targets: Sequence[Target], name: str, version: str, *, deep: bool, verifier: SignatureVerifier | None
) -> dict[str, str]:
    """The version's manifest sha256 in each target, after it verified there; VersionRefused
    naming every target and object at fault otherwise, or TargetUnreachable (exit 1) when the only
    trouble is a target that could not be read at all."""
    with ThreadPoolExecutor(max_workers=len(targets), thread_name_prefix="verify") as pool:
        results = list(
            pool.map(lambda t: verify_version(t, name, version, deep=deep, verifier=verifier), targets)
        )
    problems = [str(d) for r in results if r.unreachable is None for d in r.drift]
    unreachable = [f"{r.target}: {r.unreachable}" for r in results if r.unreachable is not None]
    if unreachable and not problems:
        raise TargetUnreachable(
            f"{name} {version} could not be checked in every target (not judged there): "
            f"{'; '.join(unreachable)}; nothing moved; run again when the bucket answers"
        )
    if unreachable:
        problems += [f"{u} (could not be reached)" for u in unreachable]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        shown = "; ".join(problems[:3])
        raise VersionRefused(
            f"{name} {version} is not complete and verified in every target: {shown}{more}; nothing moved"
        )
    return {r.target: r.manifest_sha256 or "" for r in results}


def _move_one(
    target: Target,
    name: str,
    version: str,
    manifest_sha: str,
    *,
    channel: str,
    moved_by: str,
    only_from: str | None = None,
) -> ChannelResult:
    storage = target.storage
    key = pointer_key(name, channel)
    result = ChannelResult(target=target.name, uri=storage.key_uri(key), channel=channel, version=version)
    try:
        raw = storage.get(version_prefix(name, version) + MANIFEST_NAME)
        if hashlib.sha256(raw).hexdigest() != manifest_sha:
            raise PreconditionFailed(
                "the manifest changed since it was verified; run the command again", uri=key
            )
        created_at = parse_manifest(raw, source=storage.key_uri(version_prefix(name, version))).created_at
        first: str | None = None  # the version the pointer named when first read
        for attempt in range(POINTER_ATTEMPTS):
            current, info = read_pointer(storage, name, channel)
            result.previous = current.version if current else None
            if current is not None and (current.version, current.manifest_sha256) == (version, manifest_sha):
                result.pointer, result.sequence = "unchanged", current.sequence
                return result
            if only_from is not None and (current is None or current.version != only_from):
                result.pointer = "left"
                return result
            if attempt == 0:
                first = result.previous
            elif result.previous != first:
                # A lost conditional write, and the pointer names another version now: someone
                # else moved it meanwhile. Theirs stands; overwriting it would undo their move.
                raise PreconditionFailed(
                    f"moved from {first} to {result.previous} by another writer while this one "
                    f"moved it to {version}: left as it is; check the channel and run again",
                    uri=result.uri,
                )
            previous = current.version if current is not None and current.version != version else None
            new = Pointer.new(
                version,
                manifest_sha,
                created_at,
                previous or (current.previous if current else None),
                replacing=current,
                moved_by=moved_by,
            )
            try:
                storage.put_if(key, new.to_bytes(), token=info.token if info else None)
            except PreconditionFailed:
                continue  # moved since we read it: read again and decide again
            result.pointer, result.sequence = "moved", new.sequence
            return result
        raise PreconditionFailed(f"kept changing under us ({POINTER_ATTEMPTS} attempts)", uri=result.uri)
    except OrchestratorError as exc:
        result.error = str(exc)
        result.pointer = "failed"
        return result
