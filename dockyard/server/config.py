"""Settings for `dockyard serve`: defaults < a TOML file < DOCKYARD_* variables < flags."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/dockyard")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dockyard"


@dataclass(frozen=True)
class Settings:
    """Every setting, its TOML key and its DOCKYARD_<KEY> variable share one name."""

    addr: str = "127.0.0.1:5000"
    data_dir: Path = field(default_factory=default_data_dir)
    database_url: str = ""
    auth: str = "hub"
    htpasswd: Path | None = None
    workers: int = 1
    server: str = "uvicorn"
    log_level: str = "info"
    access_log: bool = False
    gc_grace_seconds: float = 3600.0
    upload_ttl_seconds: float = 7 * 24 * 3600.0
    public_url: str = ""
    token_service: str = "dockyard"
    default_private: bool = False
    open_signup: bool = True
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "dockyard@localhost"
    build_workers: int = 1
    build_namespace_limit: int = 2
    build_lease_seconds: float = 30.0
    worker_token: str = ""
    allow_local_sources: bool = False

    @property
    def host(self) -> str:
        return self.addr.rpartition(":")[0].strip("[]") or "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.addr.rpartition(":")[2])

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'dockyard.db'}"

    def check(self) -> Settings:
        if self.auth not in ("none", "htpasswd", "hub"):
            raise ValueError(f"auth must be 'hub', 'none' or 'htpasswd', not {self.auth!r}")
        if self.auth == "htpasswd" and not self.htpasswd:
            raise ValueError("auth 'htpasswd' needs an htpasswd file: --htpasswd FILE")
        if self.server not in ("uvicorn", "granian"):
            raise ValueError(f"server must be 'uvicorn' or 'granian', not {self.server!r}")
        if self.build_lease_seconds < 1:
            raise ValueError("build_lease_seconds must be at least 1")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if not 0 < self.port < 65536:
            raise ValueError(f"addr {self.addr!r} needs a port between 1 and 65535")
        return self


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("Path", "Path | None"):
        return Path(value).expanduser() if value not in (None, "") else None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    return str(value)


def load_settings(config_file: Path | None, overrides: dict[str, Any]) -> Settings:
    """Merge the layers of configuration; later layers win."""
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}
    if config_file is not None:
        with open(config_file, "rb") as handle:
            for key, value in tomllib.load(handle).items():
                key = key.replace("-", "_")
                if key not in names:
                    raise ValueError(f"{config_file}: unknown setting {key!r}")
                values[key] = value
    for name in names:
        env = os.environ.get(f"DOCKYARD_{name.upper()}")
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    return replace(Settings(), **coerced).check()
