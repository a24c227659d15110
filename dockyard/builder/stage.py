"""The state of one build stage: its current image, run config and ARGs in scope."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from dockyard.oci.image import DEFAULT_PATH, ImageConfig

DEFAULT_SHELL = ["/bin/sh", "-c"]
PROXY_ARGS = frozenset(
    {
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    }
)


@dataclass(slots=True)
class Stage:
    name: str | None
    index: int
    image_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    diff_ids: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    architecture: str | None = None
    os: str = "linux"
    variant: str | None = None
    author: str = ""
    args: dict[str, str | None] = field(default_factory=dict)
    cmd_set: bool = False

    def adopt(self, image_id: str | None, config: ImageConfig | None) -> None:
        """Make `image_id` (with its parsed config) the stage's current image."""
        self.image_id = image_id
        if config is None:
            return
        self.config = copy.deepcopy(config.config)
        self.diff_ids = config.diff_ids
        self.history = config.history
        self.architecture = config.architecture or None
        self.os = config.os or "linux"
        self.variant = config.body.get("variant")
        self.author = str(config.body.get("author") or "")

    def ensure_path(self) -> None:
        env = self.config.get("Env") or []
        if not any(item.partition("=")[0] == "PATH" for item in env):
            self.config["Env"] = [*env, f"PATH={DEFAULT_PATH}"]

    @property
    def shell(self) -> list[str]:
        return list(self.config.get("Shell") or DEFAULT_SHELL)

    def env_pairs(self) -> list[tuple[str, str]]:
        return [
            (key, value)
            for key, _, value in (item.partition("=") for item in self.config.get("Env") or [])
        ]

    def set_env(self, key: str, value: str) -> None:
        """Set a variable in place (a new one goes last), as Docker orders Env."""
        env = list(self.config.get("Env") or [])
        for index, item in enumerate(env):
            if item.partition("=")[0] == key:
                env[index] = f"{key}={value}"
                break
        else:
            env.append(f"{key}={value}")
        self.config["Env"] = env

    def expansion_env(self, proxies: dict[str, str]) -> dict[str, str]:
        """Variables for expanding instruction words: ARGs in scope, ENV over them."""
        env = {k: v for k, v in proxies.items()}
        env.update({k: v for k, v in self.args.items() if v is not None})
        env.update(dict(self.env_pairs()))
        return env

    def args_in_use(self, proxies: dict[str, str]) -> list[tuple[str, str]]:
        """Build args a RUN sees: declared (or proxy) ones with a value, not shadowed by ENV."""
        env_keys = {k for k, _ in self.env_pairs()}
        values = {k: v for k, v in proxies.items()}
        values.update({k: v for k, v in self.args.items() if v is not None})
        return sorted((k, v) for k, v in values.items() if k not in env_keys)
