"""`--change` / `-c` instructions (`CMD ["x"]`, `ENV A=B`, …) applied to an image config."""

from __future__ import annotations

import json
import shlex
from typing import Any

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER")
ALLOWED += ("VOLUME", "WORKDIR")


class InvalidChange(ValueError):
    pass


def _json_or_shell(rest: str, shell: bool = True) -> list[str]:
    text = rest.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text] if shell else [text]


def _pairs(rest: str, instruction: str) -> list[tuple[str, str]]:
    words = shlex.split(rest)
    if not words:
        raise InvalidChange(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    pairs = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidChange(f"{instruction}: expected KEY=VALUE, got {word!r}")
        pairs.append((key, value))
    return pairs


def apply_change(config: dict[str, Any], change: str) -> None:
    """Apply one instruction to the `config` object (the image config's "config" field)."""
    instruction, _, rest = change.strip().partition(" ")
    instruction = instruction.upper()
    if instruction not in ALLOWED:
        raise InvalidChange(f"{instruction} is not a valid change command")
    if instruction == "CMD":
        config["Cmd"] = _json_or_shell(rest)
    elif instruction == "ENTRYPOINT":
        config["Entrypoint"] = _json_or_shell(rest)
    elif instruction == "ENV":
        env = list(config.get("Env") or [])
        for key, value in _pairs(rest, "ENV"):
            env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
        config["Env"] = env
    elif instruction == "LABEL":
        labels = dict(config.get("Labels") or {})
        labels.update(_pairs(rest, "LABEL"))
        config["Labels"] = labels
    elif instruction == "EXPOSE":
        ports = dict(config.get("ExposedPorts") or {})
        for port in rest.split():
            ports[port if "/" in port else f"{port}/tcp"] = {}
        config["ExposedPorts"] = ports
    elif instruction == "VOLUME":
        volumes = dict(config.get("Volumes") or {})
        for path in (
            _json_or_shell(rest, shell=False) if rest.strip().startswith("[") else rest.split()
        ):
            volumes[path] = {}
        config["Volumes"] = volumes
    elif instruction == "USER":
        config["User"] = rest.strip()
    elif instruction == "WORKDIR":
        config["WorkingDir"] = rest.strip()
    elif instruction == "STOPSIGNAL":
        config["StopSignal"] = rest.strip()
    elif instruction == "ONBUILD":
        config["OnBuild"] = [*(config.get("OnBuild") or []), rest.strip()]
