"""Push webhooks from GitHub, GitLab, Bitbucket and Gitea/Forgejo: authenticity, then the ref.

Each host proves a delivery its own way: an HMAC-SHA256 of the raw body (GitHub
`X-Hub-Signature-256`, Bitbucket `X-Hub-Signature`, Gitea `X-Gitea-Signature`, Forgejo
`X-Forgejo-Signature`) or the shared secret itself (GitLab `X-Gitlab-Token`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dockyard.builds.rules import BRANCH, TAG

MAX_BODY = 5 << 20
ZERO_COMMIT = "0" * 40


class WebhookRejected(Exception):
    """The delivery is not authentic or not understood; nothing is built."""


@dataclass(frozen=True)
class PushEvent:
    provider: str
    source_type: str
    ref: str
    commit: str | None
    message: str | None


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _check(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise WebhookRejected("signature does not match the webhook secret")


def provider_of(headers: Mapping[str, str]) -> str:
    if "x-forgejo-event" in headers:
        return "forgejo"
    if "x-gitea-event" in headers:
        return "gitea"
    if "x-gitlab-event" in headers:
        return "gitlab"
    if "x-github-event" in headers:
        return "github"
    if "x-event-key" in headers:
        return "bitbucket"
    raise WebhookRejected("not a webhook from GitHub, GitLab, Bitbucket, Gitea or Forgejo")


def verify(provider: str, headers: Mapping[str, str], body: bytes, secret: str) -> None:
    if provider == "gitlab":
        _check(secret, headers.get("x-gitlab-token"))
    elif provider == "github":
        _check("sha256=" + _hmac_hex(secret, body), headers.get("x-hub-signature-256"))
    elif provider == "bitbucket":
        _check("sha256=" + _hmac_hex(secret, body), headers.get("x-hub-signature"))
    elif provider == "forgejo":
        _check(_hmac_hex(secret, body), headers.get("x-forgejo-signature"))
    else:
        _check(_hmac_hex(secret, body), headers.get("x-gitea-signature"))


def _split_ref(ref: str) -> tuple[str, str] | None:
    if ref.startswith("refs/heads/"):
        return BRANCH, ref[len("refs/heads/") :]
    if ref.startswith("refs/tags/"):
        return TAG, ref[len("refs/tags/") :]
    return None


def _last_message(commits: Any) -> str | None:
    if isinstance(commits, list) and commits and isinstance(commits[-1], dict):
        message = commits[-1].get("message")
        return message if isinstance(message, str) else None
    return None


def _github_like(provider: str, payload: dict[str, Any]) -> list[PushEvent]:
    """GitHub, Gitea and Forgejo share the push payload's shape."""
    split = _split_ref(str(payload.get("ref", "")))
    after = payload.get("after")
    if split is None or payload.get("deleted") or after == ZERO_COMMIT:
        return []
    head = payload.get("head_commit") if isinstance(payload.get("head_commit"), dict) else {}
    message = head.get("message") if head else None
    return [
        PushEvent(
            provider,
            split[0],
            split[1],
            after if isinstance(after, str) else None,
            message if isinstance(message, str) else _last_message(payload.get("commits")),
        )
    ]


def _gitlab(payload: dict[str, Any]) -> list[PushEvent]:
    split = _split_ref(str(payload.get("ref", "")))
    commit = payload.get("checkout_sha") or payload.get("after")
    if split is None or not commit or commit == ZERO_COMMIT:
        return []
    message = payload.get("message") if split[0] == TAG else None
    return [
        PushEvent(
            "gitlab",
            split[0],
            split[1],
            commit,
            message or _last_message(payload.get("commits")),
        )
    ]


def _bitbucket(payload: dict[str, Any]) -> list[PushEvent]:
    events = []
    changes = (payload.get("push") or {}).get("changes") or []
    for change in changes if isinstance(changes, list) else []:
        new = change.get("new") if isinstance(change, dict) else None
        if not isinstance(new, dict) or new.get("type") not in ("branch", "tag"):
            continue
        target = new.get("target") if isinstance(new.get("target"), dict) else {}
        events.append(
            PushEvent(
                "bitbucket",
                BRANCH if new["type"] == "branch" else TAG,
                str(new.get("name", "")),
                target.get("hash"),
                target.get("message"),
            )
        )
    return events


def parse_delivery(headers: Mapping[str, str], body: bytes, secret: str) -> list[PushEvent]:
    """The pushes an authentic delivery reports; [] for other events (ping, issues, …)."""
    if len(body) > MAX_BODY:
        raise WebhookRejected("webhook body too large")
    provider = provider_of(headers)
    verify(provider, headers, body, secret)
    event = {
        "github": headers.get("x-github-event"),
        "gitea": headers.get("x-gitea-event"),
        "forgejo": headers.get("x-forgejo-event"),
        "gitlab": headers.get("x-gitlab-event"),
        "bitbucket": headers.get("x-event-key"),
    }[provider]
    if event not in ("push", "Push Hook", "Tag Push Hook", "repo:push"):
        return []
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected("webhook body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected("webhook body is not a JSON object")
    if provider == "gitlab":
        return _gitlab(payload)
    if provider == "bitbucket":
        return _bitbucket(payload)
    return _github_like(provider, payload)
