"""Dockerfile text → instructions: directives, continuations, comments, heredocs, flags, JSON.

This is the builder's only view of Dockerfile syntax (`parse`), so another parser could stand
behind the same interface. The rules follow the Dockerfile reference: parser directives only
at the very top, the escape character ending a line continues it, comment and empty lines
inside a continuation are dropped, and RUN/COPY/ADD may carry heredocs (`<<EOF`, `<<-EOF`,
`<<"EOF"` without expansion).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from dockyard.builder.errors import DockerfileParseError

MAX_INSTRUCTIONS = 2000
MAX_DOCKERFILE_BYTES = 16 << 20

KEYWORDS = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})
FLAG_KEYWORDS = frozenset({"ADD", "COPY", "FROM", "RUN", "HEALTHCHECK"})
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(?:\"([^\"\s]+)\"|'([^'\s]+)'|([A-Za-z0-9_.\-]+))")


@dataclass(frozen=True, slots=True)
class Heredoc:
    name: str
    content: str
    expand: bool = True


@dataclass(slots=True)
class Instruction:
    keyword: str
    original: str
    line: int
    rest: str
    flags: dict[str, str] = field(default_factory=dict)
    json_args: list[str] | None = None
    heredocs: list[Heredoc] = field(default_factory=list)

    def words(self) -> list[str]:
        """The arguments split on whitespace (how COPY, ADD, VOLUME, … read them)."""
        return self.json_args if self.json_args is not None else self.rest.split()


@dataclass(slots=True)
class Dockerfile:
    instructions: list[Instruction]
    directives: dict[str, str]
    escape: str = "\\"


def parse(text: str) -> Dockerfile:
    """Parse a whole Dockerfile; raises DockerfileParseError with the line number."""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_DOCKERFILE_BYTES:
        raise DockerfileParseError(f"the Dockerfile is larger than {MAX_DOCKERFILE_BYTES} bytes")
    text = text.removeprefix("\ufeff")
    lines = text.replace("\r\n", "\n").split("\n")
    directives, index = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileParseError(f"invalid escape token {escape!r} does not match ` or \\", 1)
    instructions: list[Instruction] = []
    while index < len(lines):
        start = index
        stripped = lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        logical, complete = _trim_continuation(lines[start].lstrip(), escape)
        while not complete and index < len(lines):
            raw = lines[index]
            index += 1
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            piece, complete = _trim_continuation(raw, escape)
            logical += piece
        instruction = _instruction(logical, start + 1)
        if instruction is None:
            continue
        if instruction.keyword in HEREDOC_KEYWORDS:
            index = _read_heredocs(instruction, lines, index)
        instructions.append(instruction)
        if len(instructions) > MAX_INSTRUCTIONS:
            raise DockerfileParseError(
                f"more than {MAX_INSTRUCTIONS} instructions; split the Dockerfile", start + 1
            )
    return Dockerfile(instructions, directives, escape)


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    found: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip())
        if not match:
            return found, index
        key = match.group(1).lower()
        if key in found:
            raise DockerfileParseError(f"only one {key} parser directive can be used", index + 1)
        found[key] = match.group(2)
    return found, len(lines)


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    """Drop a trailing escape character; returns the text and whether the line is complete."""
    trimmed = line.rstrip()
    if trimmed.endswith(escape):
        return trimmed[:-1], False
    return line, True


def _instruction(logical: str, line: int) -> Instruction | None:
    text = logical.strip()
    if not text:
        return None
    keyword, _, rest = text.partition(" ")
    if "\t" in keyword:
        keyword, _, more = keyword.partition("\t")
        rest = more + " " + rest
    upper = keyword.upper()
    if upper not in KEYWORDS:
        raise DockerfileParseError(f"unknown instruction: {keyword.upper()}", line)
    instruction = Instruction(keyword=upper, original=text, line=line, rest=rest.strip())
    if upper in FLAG_KEYWORDS:
        instruction.flags, instruction.rest = _flags(instruction.rest, line)
    if upper in ("RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"):
        instruction.json_args = json_array(instruction.rest)
    return instruction


def _flags(rest: str, line: int) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    remaining = rest
    while remaining.startswith("--"):
        word, _, after = remaining.partition(" ")
        if word == "--":
            remaining = after.lstrip()
            break
        name, sep, value = word[2:].partition("=")
        if not name:
            raise DockerfileParseError(f"invalid flag {word!r}", line)
        flags[name.lower()] = value if sep else ""
        remaining = after.lstrip()
    return flags, remaining


def json_array(text: str) -> list[str] | None:
    """`["a", "b"]` as a list when the text is a JSON array of strings, else None."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def heredoc_markers(text: str) -> list[tuple[str, bool, bool]]:
    """The heredocs a line opens, outside quotes: (word, strip tabs, expand)."""
    markers = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
        elif text.startswith("<<", i) and not text.startswith("<<<", i):
            match = _HEREDOC.match(text, i)
            if match:
                word = match.group(2) or match.group(3) or match.group(4)
                quoted = match.group(4) is None
                markers.append((word, match.group(1) == "-", not quoted))
                i = match.end()
                continue
        i += 1
    return markers


def _read_heredocs(instruction: Instruction, lines: list[str], index: int) -> int:
    if instruction.json_args is not None:
        return index
    for word, strip_tabs, expand in heredoc_markers(instruction.rest):
        body: list[str] = []
        while True:
            if index >= len(lines):
                raise DockerfileParseError(
                    f"unterminated heredoc: no line {word!r} ends the heredoc", instruction.line
                )
            raw = lines[index]
            index += 1
            candidate = raw.lstrip("\t") if strip_tabs else raw
            if candidate == word:
                break
            body.append(candidate)
        content = "\n".join(body) + "\n" if body else ""
        instruction.heredocs.append(Heredoc(word, content, expand))
    return index
