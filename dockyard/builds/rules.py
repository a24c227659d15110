"""Build rules with Docker Hub's semantics: which refs build, and under which Docker tags."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.oci.names import is_tag

BRANCH = "branch"
TAG = "tag"
SOURCE_TYPES = (BRANCH, TAG)
MAX_PATTERN = 255
_GROUP = re.compile(r"\{\\([1-9])\}")
_NOT_TAG = re.compile(r"[^a-zA-Z0-9_.-]")


class RuleError(ValueError):
    """A build rule that cannot work; the message says which part."""


@dataclass(frozen=True)
class Rule:
    source_type: str
    source_name: str
    docker_tag: str
    dockerfile: str = "Dockerfile"
    context: str = "/"
    autobuild: bool = True
    cache: bool = True
    id: int | None = None

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The regular expression of a `/regex/` source name, None for a literal one."""
        name = self.source_name
        if len(name) > 2 and name.startswith("/") and name.endswith("/"):
            return re.compile(name[1:-1])
        return None

    def check(self) -> Rule:
        if self.source_type not in SOURCE_TYPES:
            raise RuleError("source type must be 'branch' or 'tag'")
        if not self.source_name or len(self.source_name) > MAX_PATTERN:
            raise RuleError(f"source must be 1 to {MAX_PATTERN} characters")
        try:
            self.pattern  # noqa: B018 - compiling is the check
        except re.error as exc:
            raise RuleError(f"source regex does not compile: {exc}") from None
        if not [t for t in self.docker_tag.split(",") if t.strip()]:
            raise RuleError("at least one Docker tag is needed")
        for path, what in ((self.dockerfile, "Dockerfile location"), (self.context, "context")):
            if ".." in path.split("/") or "\0" in path:
                raise RuleError(f"{what} must stay inside the repository")
        return self

    def tags_for(self, source_type: str, ref: str) -> list[str] | None:
        """The Docker tags a push of `ref` builds under this rule, or None if it does not match."""
        if source_type != self.source_type:
            return None
        pattern = self.pattern
        groups: tuple[str | None, ...] = ()
        if pattern is None:
            if ref != self.source_name:
                return None
        else:
            match = pattern.search(ref)
            if match is None:
                return None
            groups = match.groups()
        tags: list[str] = []
        for template in self.docker_tag.split(","):
            template = template.strip()
            if not template:
                continue
            tag = template.replace("{sourceref}", ref)
            tag = _GROUP.sub(lambda m: _group(groups, int(m.group(1))), tag)
            tag = _NOT_TAG.sub("-", tag).lstrip(".-")[:128]
            if is_tag(tag) and tag not in tags:
                tags.append(tag)
        return tags or None


def _group(groups: tuple[str | None, ...], number: int) -> str:
    return (groups[number - 1] or "") if number <= len(groups) else ""


def default_rule(branch: str) -> Rule:
    """What Docker Hub sets up when a repository is linked: the default branch as `latest`."""
    return Rule(BRANCH, branch, "latest")
