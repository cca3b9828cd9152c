"""An SDK client built on first use and closed with its owner.

Backends create their clients lazily so that opening a storage or a routing backend sends no
request and imports no SDK until an operation needs it (``orchestrator --help`` stays fast, and a
misconfigured cloud fails at its first use with a message naming it). Several threads may ask at
once; the client is built exactly once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["LazyClient"]


class LazyClient:
    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._client: Any = None

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
