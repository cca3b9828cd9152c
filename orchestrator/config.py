"""``orchestrator.yaml``: one file, validated on load, every error naming the key at fault.

The file is found by ``--config``, else ``$ORCHESTRATOR_CONFIG``, else ``./orchestrator.yaml``.
Clouds are keyed by the same names in every layer (``aws``, ``gcp``, ``azure``); a cloud's
``storage`` is a bucket URI (``s3://``, ``gs://``, ``az://``, ``file://``) and ``storage_settings``
holds backend options such as an emulator's ``endpoint_url`` (never credentials: those come from each
cloud's usual source).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.errors import ConfigError
from orchestrator.types import CLOUDS, CloudName

__all__ = ["CLOUDS", "CloudConfig", "Config", "ModelConfig", "find_config", "load_config"]

DEFAULT_PATH = Path("orchestrator.yaml")
# Keys that would put a secret into a file that gets committed; refused with a pointer instead.
_SECRET_SETTINGS = frozenset(
    {"connection_string", "account_key", "secret_access_key", "sas_token", "credentials"}
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="the model's name in every bucket")


class CloudConfig(_Strict):
    storage: str = Field(description="bucket URI holding models/<name>/...")
    storage_settings: dict[str, str] = Field(default_factory=dict)

    @field_validator("storage")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("s3://", "gs://", "az://", "file://", "/")):
            raise ValueError(f"{value!r} is not a bucket URI (s3://, gs://, az:// or file://)")
        return value

    @field_validator("storage_settings")
    @classmethod
    def _no_secrets(cls, value: dict[str, str]) -> dict[str, str]:
        if secret := _SECRET_SETTINGS & value.keys():
            raise ValueError(
                f"{sorted(secret)} must not be written in the configuration file; use the cloud's "
                "usual credential source (AZURE_STORAGE_CONNECTION_STRING, AWS profiles, ADC)"
            )
        return value


class Config(_Strict):
    model: ModelConfig
    clouds: dict[CloudName, CloudConfig] = Field(min_length=1)
    source: str | None = Field(default=None, exclude=True)

    def cloud(self, name: str) -> CloudConfig:
        if name not in self.clouds:
            configured = ", ".join(self.clouds) or "none"
            raise ConfigError(
                f"{self.source or 'configuration'}: cloud {name!r} is not configured ({configured})"
            )
        return self.clouds[name]


def find_config(path: Path | None) -> Path:
    if path is not None:
        return path
    env = os.environ.get("ORCHESTRATOR_CONFIG")
    return Path(env) if env else DEFAULT_PATH


def load_config(path: Path | None = None) -> Config:
    """Read and validate the configuration; raise ConfigError naming the file and the key."""
    path = find_config(path)
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found (pass --config or set ORCHESTRATOR_CONFIG)"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return Config.model_validate({**raw, "source": str(path)})
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {key}: {first['msg']}") from None
