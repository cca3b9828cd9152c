"""Opening the backend a storage URI names: the scheme → backend table.

Each backend module is imported when its scheme is first opened, so importing
:mod:`orchestrator.core.storage` never imports a cloud SDK.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from orchestrator.core.errors import ConfigError
from orchestrator.core.storage.base import COMMON_SETTINGS, Storage
from orchestrator.core.storage.retry import DEFAULT_RETRY, RetryPolicy
from orchestrator.core.storage.uri import parse_uri

__all__ = ["allowed_settings", "open_storage"]

# scheme -> "module:Class", imported on first use (the lazy-import rule for cloud SDKs).
_BACKENDS: dict[str, str] = {
    "file": "orchestrator.core.storage.local:LocalStorage",
    "s3": "orchestrator.core.storage.aws:S3Storage",
    "gs": "orchestrator.core.storage.gcp:GCSStorage",
    "az": "orchestrator.core.storage.azure:AzureStorage",
}


def open_storage(
    uri: str,
    *,
    settings: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
) -> Storage:
    """Open the backend ``uri`` names. No request is sent until the first operation.

    ``settings`` are strings, as a configuration file supplies them: ``endpoint_url`` and
    ``region`` (s3), ``endpoint_url`` and ``project`` (gs), ``connection_string`` and
    ``account_url`` (az), and for every backend ``page_size``, ``part_size``,
    ``max_concurrency``, ``connect_timeout`` and ``read_timeout``. Without them the standard
    environment variables apply (``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``,
    ``AZURE_STORAGE_CONNECTION_STRING``...). An unknown setting is a :class:`ConfigError`.
    ``retry`` defaults to :data:`~orchestrator.core.storage.retry.DEFAULT_RETRY`.
    """
    location = parse_uri(uri)
    cls = _backend_class(location.scheme)
    given = dict(settings or {})
    allowed = allowed_settings(uri)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(
            f"storage {uri}: unknown setting(s) {', '.join(unknown)}; "
            f"{location.scheme}:// accepts {', '.join(sorted(allowed))}"
        )
    return cls(location, settings=given, retry=retry or DEFAULT_RETRY)


def allowed_settings(uri: str) -> frozenset[str]:
    """The setting keys :func:`open_storage` accepts for ``uri`` (ConfigError for a bad URI).
    Imports the backend's module, never its SDK."""
    return COMMON_SETTINGS | _backend_class(parse_uri(uri).scheme).settings_keys


def _backend_class(scheme: str) -> type[Storage]:
    module_name, _, class_name = _BACKENDS[scheme].partition(":")
    cls: type[Storage] = getattr(importlib.import_module(module_name), class_name)
    return cls
