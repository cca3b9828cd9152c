"""Reading a configuration's text safely: from a path or an object URI, as UTF-8, into YAML values.

The file may come from anyone (a typo, a copy of something else, a hostile commit), so before
:mod:`orchestrator.control.config` validates what it says, this module refuses what is not a configuration
at all, each as one ConfigError naming the source: a missing or unreadable file, one over
:data:`MAX_CONFIG_BYTES`, bytes that are not UTF-8 text (or hold NUL), invalid YAML (reported by
line and column, never by quoting the line, which may hold a secret), a key given twice in one
mapping (PyYAML would silently keep the last), and aliases that expand past
:data:`MAX_CONFIG_NODES` values (a "billion laughs").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.core.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_NODES", "decode_text", "parse_yaml", "read_text"]

# A hand-written configuration is a few kilobytes; one over a mebibyte is not one, and reading it
# whole (YAML parsing is about 1 MB/s in pure Python) would stall every command.
MAX_CONFIG_BYTES = 1024 * 1024
# Nodes after aliases are expanded. A real configuration has a few hundred; YAML aliases can make
# a small file expand exponentially ("billion laughs"), so expansion stops well before that hurts.
MAX_CONFIG_NODES = 100_000


def parse_yaml(text: str, source: str) -> Any:
    """YAML ``text`` as Python values, refusing duplicate keys and alias bombs (ConfigError)."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        # The problem and where, never the snippet PyYAML quotes: the line may hold a secret.
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML: {exc.problem or exc.context}{where}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {type(exc).__name__}") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML nested too deeply") from None
    _count_nodes(data, source)
    return data


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _count_nodes(data: Any, source: str) -> None:
    """Walk ``data`` as a reader would, aliases expanded, and stop at MAX_CONFIG_NODES."""
    stack = [data]
    count = 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise ConfigError(
                f"{source}: more than {MAX_CONFIG_NODES} values once YAML aliases are expanded "
                "(or a value that contains itself); write the configuration out"
            )
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def read_text(source: str) -> str:
    """The text of the configuration at ``source`` (a path, or an ``s3://``/``gs://``/``az://`` object)."""
    if source.startswith(("s3://", "gs://", "az://")):
        data = _read_object(source)
    else:
        try:
            with Path(source).open("rb") as handle:
                data = handle.read(MAX_CONFIG_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError(
                f"{source}: configuration file not found (pass --config or set ORCHESTRATOR_CONFIG)"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the configuration: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file")
    return decode_text(data, source)


def decode_text(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text, or ConfigError naming ``source`` and where it is not text."""
    if b"\x00" in data:
        raise ConfigError(f"{source}: a binary file (it holds NUL bytes), not YAML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _read_object(source: str) -> bytes:
    from orchestrator.core.errors import NotFound
    from orchestrator.core.storage import open_storage

    root, _, key = source.rpartition("/")
    try:
        storage = open_storage(root)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        if storage.stat(key).size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{source}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file"
            )
        return storage.get(key)
    except NotFound:
        raise ConfigError(f"{source}: configuration object not found") from None
    finally:
        storage.close()
