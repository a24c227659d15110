"""Argument rules of single instructions: command forms, EXPOSE ports, HEALTHCHECK, ONBUILD."""

from __future__ import annotations

import re
from typing import Any

from dockyard.builder.errors import BuildError
from dockyard.builder.parser import Instruction, json_array

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9}
_PROTOCOLS = ("tcp", "udp", "sctp")
_NOT_ONBUILD = {"ONBUILD": "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                "FROM": "FROM isn't allowed as an ONBUILD trigger",
                "MAINTAINER": "MAINTAINER isn't allowed as an ONBUILD trigger"}


def shell_or_exec(instruction: Instruction, shell: list[str]) -> list[str]:
    """CMD/ENTRYPOINT/RUN arguments: the JSON (exec) form as is, else the shell form."""
    if instruction.json_args is not None:
        return list(instruction.json_args)
    if not instruction.rest:
        raise BuildError(f"{instruction.keyword} requires at least one argument")
    return [*shell, instruction.rest]


def parse_ports(words: list[str]) -> list[str]:
    """EXPOSE words (`80`, `53/udp`, `8000-8002/tcp`) as sorted `PORT/PROTO` keys."""
    ports: set[str] = set()
    for word in words:
        number, _, protocol = word.partition("/")
        protocol = (protocol or "tcp").lower()
        if protocol not in _PROTOCOLS:
            raise BuildError(f"invalid proto: {protocol} (EXPOSE {word})")
        low, dash, high = number.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise BuildError(f"invalid containerPort: {number} (EXPOSE {word})")
        first, last = int(low), int(high) if dash else int(low)
        if not 0 < first <= last <= 65535:
            raise BuildError(f"invalid port range: {number} (EXPOSE {word})")
        if last - first > 65535:
            raise BuildError(f"invalid port range: {number}")
        ports.update(f"{port}/{protocol}" for port in range(first, last + 1))
    return sorted(ports)


def parse_duration(text: str, flag: str) -> int:
    """A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds; `0` is allowed."""
    if text == "0":
        return 0
    total, pos = 0.0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise BuildError(f"invalid duration for --{flag}: {text!r} (use e.g. 30s, 1m30s)")
    nanoseconds = int(total)
    if 0 < nanoseconds < 1_000_000:
        raise BuildError(f"Interval {flag} cannot be less than 1ms")
    return nanoseconds


def healthcheck(instruction: Instruction) -> dict[str, Any]:
    """HEALTHCHECK [--interval=…] CMD …, or NONE, as the config's Healthcheck object."""
    kind, _, command = instruction.rest.partition(" ")
    kind = kind.upper()
    command = command.strip()
    if kind == "NONE":
        if command or instruction.flags:
            raise BuildError("HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise BuildError(f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
    if not command:
        raise BuildError("Missing command after HEALTHCHECK CMD")
    exec_form = json_array(command)
    test = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", command]
    check: dict[str, Any] = {"Test": test}
    known = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval"}
    for flag, value in instruction.flags.items():
        if flag in known:
            check[known[flag]] = parse_duration(value, flag)
        elif flag == "retries":
            if not value.isdigit():
                raise BuildError(f"--retries must be a non-negative integer, not {value!r}")
            check["Retries"] = int(value)
        else:
            raise BuildError(f"Unknown flag: {flag}")
    return check


def onbuild_trigger(keyword: str) -> None:
    """Refuse the instructions that ONBUILD may not carry."""
    if keyword in _NOT_ONBUILD:
        raise BuildError(_NOT_ONBUILD[keyword])
