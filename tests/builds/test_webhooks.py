"""Each git host's real push deliveries, replayed: its own signature check, then the refs."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from dockyard.builds.webhooks import MAX_BODY, WebhookRejected, parse_delivery

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "9f6c1e0a-webhook-secret"


def delivery(name: str, secret: str = SECRET) -> tuple[dict[str, str], bytes]:
    """The recorded headers and body, signed as the host would sign them with `secret`."""
    recorded = json.loads((PAYLOADS / name).read_text())
    body = json.dumps(recorded["body"]).encode()
    signatures = {
        "{sha256}": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "{sha1}": hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        "{secret}": secret,
    }
    headers = {}
    for key, value in recorded["headers"].items():
        for placeholder, signature in signatures.items():
            value = value.replace(placeholder, signature)
        headers[key.lower()] = value
    return headers, body


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "github-push.json",
            [("github", "branch", "master", "6113728f27ae82c7b1a177c8d03f9e96e0adf246")],
        ),
        (
            "github-push-tag.json",
            [("github", "tag", "v1.4.2", "6113728f27ae82c7b1a177c8d03f9e96e0adf246")],
        ),
        ("github-push-deleted.json", []),
        ("github-ping.json", []),
        (
            "gitlab-push.json",
            [("gitlab", "branch", "master", "da1560886d4f094c3e6c9ef40349f7d38b5d27d7")],
        ),
        (
            "gitlab-tag-push.json",
            [("gitlab", "tag", "v1.0.0", "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7")],
        ),
        ("gitlab-push-deleted.json", []),
        (
            "gitea-push.json",
            [("gitea", "branch", "develop", "bffeb74224043ba2feb48d137756c8a9331c449a")],
        ),
        (
            "forgejo-push.json",
            [("forgejo", "branch", "develop", "bffeb74224043ba2feb48d137756c8a9331c449a")],
        ),
        (
            "forgejo-push-tag.json",
            [("forgejo", "tag", "v2.0.1", "bffeb74224043ba2feb48d137756c8a9331c449a")],
        ),
        (
            "bitbucket-push.json",
            [
                ("bitbucket", "branch", "main", "709d658dc5b6d6afcd46049c2f332ee3f515a67d"),
                ("bitbucket", "tag", "v3.1", "709d658dc5b6d6afcd46049c2f332ee3f515a67d"),
            ],
        ),
    ],
)
def test_authentic_deliveries_report_their_pushes(
    name: str, expected: list[tuple[str, str, str, str]]
) -> None:
    headers, body = delivery(name)
    events = parse_delivery(headers, body, SECRET)
    assert [(e.provider, e.source_type, e.ref, e.commit) for e in events] == expected
    assert all(e.message for e in events)


def test_commit_messages_come_from_the_head_commit() -> None:
    github = parse_delivery(*delivery("github-push.json"), SECRET)
    gitlab_tag = parse_delivery(*delivery("gitlab-tag-push.json"), SECRET)
    gitlab = parse_delivery(*delivery("gitlab-push.json"), SECRET)
    assert github[0].message == "Initial commit"
    assert gitlab_tag[0].message == "Tag message"
    assert gitlab[0].message == "fixed readme"


@pytest.mark.parametrize("name", sorted(p.name for p in PAYLOADS.glob("*.json")))
def test_a_delivery_signed_with_another_secret_is_rejected(name: str) -> None:
    headers, body = delivery(name, secret="not-the-secret")
    with pytest.raises(WebhookRejected, match="signature"):
        parse_delivery(headers, body, SECRET)


@pytest.mark.parametrize("name", ["github-push.json", "gitea-push.json", "bitbucket-push.json"])
def test_a_body_changed_after_signing_is_rejected(name: str) -> None:
    headers, body = delivery(name)
    tampered = body.replace(b"refs/heads/", b"refs/tags/").replace(b'"branch"', b'"tag"')
    assert tampered != body
    with pytest.raises(WebhookRejected):
        parse_delivery(headers, tampered, SECRET)


def test_unsigned_unknown_and_oversize_deliveries_are_rejected() -> None:
    headers, body = delivery("github-push.json")
    unsigned = {k: v for k, v in headers.items() if not k.startswith("x-hub-signature")}
    with pytest.raises(WebhookRejected):
        parse_delivery(unsigned, body, SECRET)
    with pytest.raises(WebhookRejected, match="not a webhook"):
        parse_delivery({"content-type": "application/json"}, body, SECRET)
    with pytest.raises(WebhookRejected, match="too large"):
        parse_delivery(headers, b" " * (MAX_BODY + 1), SECRET)
    gitlab, gitlab_body = delivery("gitlab-push.json")
    with pytest.raises(WebhookRejected):
        parse_delivery({**gitlab, "x-gitlab-token": SECRET + "x"}, gitlab_body, SECRET)


def test_a_signed_body_that_is_not_json_is_rejected_cleanly() -> None:
    headers, _ = delivery("github-push.json")
    body = b"\xff\xfe not json"
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers["x-hub-signature-256"] = "sha256=" + signature
    with pytest.raises(WebhookRejected, match="not JSON"):
        parse_delivery(headers, body, SECRET)
