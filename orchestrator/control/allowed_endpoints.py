"""The endpoints a scheduled job may probe and route to: the ones its stack exported.

The job's configuration names each cloud's ``endpoint``; whoever could change that file could
point a cloud at a host of their own that passes the probes by proxying, and the job would send
every client there. The stacks therefore give the job ``ORCHESTRATOR_ENDPOINTS``, a JSON object
``{cloud: URL}`` built from the stack outputs (plain configuration, not a secret). When it is set,
a configuration whose ``clouds.<cloud>.endpoint`` is not exactly the allowed URL for that cloud is
refused (ConfigError, exit 2) naming the cloud. Unset (a laptop, the demo), nothing is checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator.core.errors import ConfigError

if TYPE_CHECKING:
    from orchestrator.control.config import Config

__all__ = ["ENDPOINTS_ENV", "check_allowed_endpoints"]

ENDPOINTS_ENV = "ORCHESTRATOR_ENDPOINTS"


def _allowed(raw: str) -> dict[str, str]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{ENDPOINTS_ENV}: not JSON (expected {{cloud: URL}})") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{ENDPOINTS_ENV}: expected a JSON object {{cloud: URL}}")
    return {cloud: url.rstrip("/") for cloud, url in value.items()}


def check_allowed_endpoints(config: Config, environ: Mapping[str, str]) -> None:
    """Raise ConfigError naming the first cloud whose endpoint is not the allowed one."""
    raw = environ.get(ENDPOINTS_ENV)
    if not raw:
        return
    allowed = _allowed(raw)
    where = config.source or "configuration"
    for cloud, settings in config.clouds.items():
        if settings.endpoint is None:
            continue
        expected = allowed.get(cloud)
        if expected is None:
            raise ConfigError(
                f"{where}: clouds.{cloud}.endpoint: {cloud} is not among the endpoints this job may use "
                f"({ENDPOINTS_ENV} lists {', '.join(sorted(allowed)) or 'none'})"
            )
        if settings.endpoint.rstrip("/") != expected:
            raise ConfigError(
                f"{where}: clouds.{cloud}.endpoint: {settings.endpoint} is not the endpoint the {cloud} "
                f"stack exported ({expected}); refusing to probe or route to it"
            )
