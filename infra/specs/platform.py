"""What a cloud's platform accepts for the endpoint: its region names and its instance sizes.

Each per-cloud options module (:mod:`infra.specs.aws_options`, ``gcp_options``, ``azure_options``)
describes its platform as a :class:`Platform`; :mod:`infra.specs.endpoint` applies the stack's
one, so a size or region the platform would refuse halfway through ``pulumi up`` fails at start.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from infra.specs.fields import ConfigError

__all__ = ["Platform", "Size", "fmt"]


def fmt(x: float) -> str:
    """A number as a person writes it in a message: 0.25, 1, 2.5."""
    return f"{x:g}"


@dataclass(frozen=True)
class Size:
    """A requested size (vCPU, GiB, in-flight requests per instance) and the keys to name when a
    platform refuses it (``namespace`` is the Pulumi project, ``ml-orchestrator``)."""

    cpu: float
    memory_gib: float
    concurrency: int
    namespace: str

    @property
    def cpu_milli(self) -> int:
        return round(self.cpu * 1000)

    @property
    def memory_mib(self) -> int:
        return round(self.memory_gib * 1024)

    def cpu_error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.namespace}:endpoint.cpu", message)

    def memory_error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.namespace}:endpoint.memory", message)


@dataclass(frozen=True)
class Platform:
    """One cloud's rules for the endpoint's region and size."""

    # The provider's own configuration key for the region (aws:region, gcp:region,
    # azure-native:location), so the provider and this program cannot disagree about it.
    region_key: str
    region_pattern: re.Pattern[str]
    region_example: str  # what the error says a region looks like
    # Raises ConfigError (through Size.cpu_error/memory_error) for a size the platform refuses.
    check_size: Callable[[Size], None]
