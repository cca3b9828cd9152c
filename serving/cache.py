"""The endpoint's model cache: one directory per version, confined to the cache root.

Every path is built from a model name and a version that passed the grammar
(:mod:`orchestrator.core.names`), then resolved (symlinks followed) and checked to lie inside the
resolved cache root before anything is created or removed there. Nothing outside the root is ever
removed: a symlink planted in the cache is unlinked itself, never followed, and an entry that
resolves elsewhere is refused with an error naming it.

The root must be the cache's own: a directory it creates or finds empty gets a marker file
(``.model-cache``), and a directory that is not empty and has no marker is refused (ConfigError
naming ``MODEL_CACHE_DIR``). Otherwise ``MODEL_CACHE_DIR=/`` and a model named ``usr`` would make
``/usr/bin`` the cache entry of a version named ``bin``, which a pointer could name.

Layout::

    <root>/<name>/<version>/            a verified version (renamed into place whole)
    <root>/<name>/.<version>-XXXXXXXX/  a download in progress (removed when it ends)

The cache keeps, per model, only the versions in use (:meth:`ModelCache.prune`: the one serving and
the one it replaced): on Cloud Run ``/tmp`` is memory, and an endpoint following frequent
publications would otherwise grow until it is killed. Downloads left by a process that died are
removed once they are a day old.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

from orchestrator.core.errors import ArtifactError, ConfigError
from orchestrator.core.names import check_model_name, check_version, is_valid_name

__all__ = ["CacheError", "ModelCache"]

# A download in progress: tempfile.mkdtemp(prefix=".<version>-") adds 8 characters.
_STAGING = re.compile(r"\.[a-z0-9][a-z0-9._-]{0,62}-[a-z0-9_]{8}")
# The file that makes a directory the cache's own (see the module docstring).
MARKER = ".model-cache"
# A download directory older than this was left by a process that died: the reload deadline is ten
# minutes by default, so a day leaves any live download of another endpoint sharing the cache alone.
STALE_STAGING_S = 24 * 3600


class CacheError(OSError):
    """The cache cannot hold a version (a full disk, an unusable directory). The message names the
    bucket object and the cache, never a temporary path. Not the content's fault: retried."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "model cache error"


class ModelCache:
    """Paths under one cache root; see the module docstring for the rules.

    Raises ConfigError for a root that is not a cache, ArtifactError for a name or version outside
    the grammar and for any path that would lie outside the root.
    """

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        # Resolved once: the root itself may be a symlink (e.g. /tmp on some systems); what it
        # points at when the endpoint starts is the cache.
        self.root = root.resolve()
        marker = self.root / MARKER
        if not marker.is_file():
            if any(self.root.iterdir()):
                raise ConfigError(
                    f"MODEL_CACHE_DIR {self.root} is not empty and is not a model cache (no {MARKER}): "
                    "point it at a directory of its own"
                )
            marker.write_text("The model cache of `orchestrator serve`: every entry here may be removed.\n")

    def _inside(self, path: Path) -> Path:
        resolved = path.resolve()
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise ArtifactError(f"cache path {path} resolves to {resolved}, outside the cache {self.root}")
        return resolved

    def model_dir(self, name: str) -> Path:
        """``<root>/<name>``, created if missing; refused if it resolves outside the root."""
        directory = self.root / check_model_name(name)
        if directory.is_symlink():
            directory.unlink()  # planted: the cache never follows a link
        directory.mkdir(exist_ok=True)
        return self._inside(directory)

    def entry(self, name: str, version: str) -> Path:
        """``<root>/<name>/<version>`` (it may not exist); refused if it resolves outside the root."""
        path = self.model_dir(name) / check_version(version)
        if path.is_symlink():
            path.unlink()
        self._inside(path)
        return path

    def staging(self, name: str, version: str) -> Path:
        """A fresh private directory beside the entry, for a download in progress."""
        return Path(tempfile.mkdtemp(prefix=f".{check_version(version)}-", dir=self.model_dir(name)))

    def remove(self, path: Path) -> None:
        """Remove ``path`` (a directory tree, a file or a link) if it lies inside the root.

        A symlink is unlinked, never followed; a directory is removed without following any link
        inside it (``shutil.rmtree`` unlinks links). A path outside the root raises ArtifactError.
        """
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        parent = self._inside(path.parent) if path.parent != self.root else self.root
        target = parent / path.name
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
            return
        self._inside(target)
        shutil.rmtree(target, ignore_errors=True)

    def install(self, staging: Path, final: Path) -> None:
        """Move a verified ``staging`` directory to ``final`` (replacing what is there). If another
        loader installed ``final`` in the meantime (an endpoint sharing the cache, or a reload given
        up past its deadline that finished after all), its copy is kept: it was verified too, and
        is verified again before any use. Other errors are raised (OSError)."""
        self._inside(staging)
        self.remove(final)
        try:
            staging.replace(final)
        except OSError:
            if not final.is_dir() or final.is_symlink():
                raise

    def prune(self, name: str, keep: Collection[str]) -> None:
        """Remove ``name``'s versions other than ``keep``, and downloads older than a day. Best
        effort: what cannot be removed now is tried again at the next prune."""
        directory = self.model_dir(name)
        now = time.time()
        for path in directory.iterdir():
            if not (is_valid_name(path.name) or _STAGING.fullmatch(path.name)):
                continue  # not an entry this cache made
            if path.name.startswith("."):
                try:
                    stale = now - path.lstat().st_mtime > STALE_STAGING_S
                except FileNotFoundError:
                    continue
                if not stale:
                    continue
            elif path.name in keep:
                continue
            with contextlib.suppress(OSError):
                self.remove(path)
