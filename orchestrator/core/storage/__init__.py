"""One small storage interface over the local filesystem, S3, GCS and Azure Blob.

    storage = open_storage("s3://bucket/prefix")        # or gs://, az://, file:///abs/path
    info = storage.put("models/m/1/model.onnx", path, sha256=digest)
    for info in storage.list("models/m/"): ...           # ObjectInfo(key, size, sha256, token, modified)

Modules: :mod:`.base` (the interface and what every backend shares), :mod:`.uri` (parsing URIs),
:mod:`.backends` (the scheme → backend table and :func:`open_storage`), :mod:`.retry` (the retry
policy), and one module per backend:
:mod:`.local`, :mod:`.aws`, :mod:`.gcp`, :mod:`.azure`. Cloud SDKs are imported only when a
backend that needs one is opened. Errors are the :class:`~orchestrator.core.errors.StorageError`
tree: NotFound, PermissionDenied, PreconditionFailed, TransientError.
"""

from __future__ import annotations

from orchestrator.core.storage.backends import allowed_settings, open_storage
from orchestrator.core.storage.base import ObjectInfo, Storage
from orchestrator.core.storage.retry import DEFAULT_RETRY, NO_RETRY, NO_WAIT_RETRY, RetryPolicy
from orchestrator.core.storage.uri import StorageURI, parse_uri

__all__ = [
    "DEFAULT_RETRY",
    "NO_RETRY",
    "NO_WAIT_RETRY",
    "ObjectInfo",
    "RetryPolicy",
    "Storage",
    "StorageURI",
    "allowed_settings",
    "open_storage",
    "parse_uri",
]
