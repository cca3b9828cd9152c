"""Where the endpoint gets its model from: ``MODEL_URI`` resolved to a verified :class:`Predictor`.

A local artifact directory (a path or ``file://`` URI) is verified in place.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from orchestrator.errors import ConfigError
from serving.model import Predictor, load_verified

__all__ = ["make_loader"]


def make_loader(uri: str) -> Callable[[], Predictor]:
    """Return a function that loads and verifies the model at ``uri`` each time it is called."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        root = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        return lambda: load_verified(root, source=str(root))
    raise ConfigError(f"MODEL_URI {uri!r}: unsupported scheme {parsed.scheme!r} (use a path or file://)")
