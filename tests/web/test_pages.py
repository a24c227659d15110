"""The web UI's pages and forms against a real hub: tags, settings, stars, tokens, accounts."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable

import httpx

from tests.conftest import DockyardServer
from tests.web.conftest import PASSWORD, WebUser, push_image

NewUser = Callable[[str], WebUser]
HTMX = {"hx-request": "true"}


def alert_of(page: httpx.Response) -> str:
    found = re.search(
        r'<p class="alert (?:error|ok)" role="(?:alert|status)">([^<]*)</p>', page.text
    )
    assert found, page.text
    return found.group(1)


def test_tags_view_and_deleting_a_tag(hub_server: DockyardServer, web_user: NewUser) -> None:
    alice = web_user("tagalice").sign_up()
    name = "tagalice/app"
    first = push_image(hub_server, alice.username, name, "v1", b"a" * 2000)
    second = push_image(hub_server, alice.username, name, "v2", b"b" * 3000)
    page = alice.get(f"/r/{name}/-/tags")
    assert page.status_code == 200
    rows = re.findall(r"<tr id=\"tag-\d+\">(.*?)</tr>", page.text, re.S)
    assert len(rows) == 2
    newest, oldest = rows  # newest first
    assert '<code class="tag-name">v2</code>' in newest and second[7:19] in newest
    assert '<code class="tag-name">v1</code>' in oldest and first[7:19] in oldest
    assert f'title="{first}"' in oldest
    assert "linux/arm64" in oldest
    assert re.search(r'<td class="num">2\.\d kB</td>', oldest)  # 2000-byte layer + its config
    assert f"docker pull {hub_server.addr}/{name}:v1" in oldest
    assert f"/r/{name}/-/tags/v1/delete" in oldest

    anonymous = web_user("")
    public_view = anonymous.get(f"/r/{name}/-/tags").text
    assert "v1" in public_view and "/-/tags/v1/delete" not in public_view
    refused = anonymous.submit(f"/r/{name}/-/tags", f"/r/{name}/-/tags/v1/delete", {})
    assert refused.status_code == 404

    deleted = alice.submit(f"/r/{name}/-/tags", f"/r/{name}/-/tags/v1/delete", {})
    assert deleted.status_code == 303
    assert deleted.headers["location"] == f"/r/{name}/-/tags"
    by_htmx = alice.http.post(
        f"/r/{name}/-/tags/v2/delete",
        headers={**HTMX, "x-csrf-token": re.findall(r'"X-CSRF-Token": "([^"]+)"', page.text)[0]},
    )
    assert by_htmx.status_code == 200
    assert by_htmx.text == ""  # htmx swaps the table row for nothing
    after = alice.get(f"/r/{name}/-/tags").text
    assert "tag-name" not in after
    assert "No tags yet." in after
    token = httpx.get(
        f"{hub_server.url}/token",
        params={"scope": f"repository:{name}:pull"},
        auth=(alice.username, PASSWORD),
    ).json()["token"]
    manifest = httpx.get(
        f"{hub_server.url}/v2/{name}/manifests/v1", headers={"authorization": f"Bearer {token}"}
    )
    assert manifest.status_code == 404


def test_create_edit_and_delete_a_repository(hub_server: DockyardServer, web_user: NewUser) -> None:
    alice = web_user("repoalice").sign_up()
    bobby = web_user("repobobby").sign_up()
    bad = alice.submit("/new", "/new", {"namespace": "repoalice", "name": "Bad Name!"})
    assert bad.status_code == 400
    assert "lowercase" in alert_of(bad)
    foreign = alice.submit("/new", "/new", {"namespace": "repobobby", "name": "mine"})
    assert foreign.status_code == 400
    assert "cannot create" in alert_of(foreign)
    created = alice.create_repository("tool", visibility="private", description="A tool")
    assert created.headers["location"] == "/r/repoalice/tool"
    again = alice.submit("/new", "/new", {"namespace": "repoalice", "name": "tool"})
    assert again.status_code == 400 and "already exists" in alert_of(again)
    assert 'class="badge private"' in alice.get("/r/repoalice/tool").text
    assert bobby.get("/r/repoalice/tool").status_code == 404

    settings = "/r/repoalice/tool/-/settings"
    too_long = alice.submit(settings, settings, {"visibility": "public", "description": "x" * 101})
    assert too_long.status_code == 400
    assert "longer than 100" in alert_of(too_long)
    saved = alice.submit(
        settings, settings, {"visibility": "public", "description": "Now public", "readme": "Hi"}
    )
    assert saved.headers["location"] == settings + "?saved=1"
    assert alert_of(alice.get(settings + "?saved=1")) == "Saved."
    overview = bobby.get("/r/repoalice/tool")
    assert overview.status_code == 200
    assert "Now public" in overview.text and "<p>Hi</p>" in overview.text

    wrong = alice.submit(settings, "/r/repoalice/tool/-/delete", {"confirm": "tool-ish"})
    assert wrong.status_code == 400
    assert "to confirm" in alert_of(wrong)
    assert alice.get("/r/repoalice/tool").status_code == 200
    gone = alice.submit(settings, "/r/repoalice/tool/-/delete", {"confirm": "repoalice/tool"})
    assert gone.status_code == 303 and gone.headers["location"] == "/u/repoalice"
    assert alice.get("/r/repoalice/tool").status_code == 404
    assert "repoalice/tool" not in alice.get("/u/repoalice").text


def test_star_and_unstar(hub_server: DockyardServer, web_user: NewUser) -> None:
    alice = web_user("staralice").sign_up()
    bobby = web_user("starbobby").sign_up()
    alice.create_repository("shiny")
    page = "/r/staralice/shiny"
    starred = bobby.submit(page, page + "/-/star", {"star": "1"})
    assert starred.status_code == 303
    view = bobby.get(page).text
    assert 'aria-pressed="true"' in view
    assert re.search(r'Starred <span class="count">1</span>', view)
    assert "&#9733; 1" in bobby.get("/explore").text
    token = re.findall(r'"X-CSRF-Token": "([^"]+)"', view)[0]
    partial = bobby.http.post(
        page + "/-/star", data={"star": "0"}, headers={**HTMX, "x-csrf-token": token}
    )
    assert partial.status_code == 200
    assert partial.text.startswith('<form id="star"')  # only the button, for htmx to swap
    assert 'Star <span class="count">0</span>' in partial.text
    anonymous = web_user("")
    asked = anonymous.submit(page, page + "/-/star", {"star": "1"})
    assert asked.status_code == 303
    assert asked.headers["location"].startswith("/login?next=")


def test_access_tokens_password_and_account_deletion(
    hub_server: DockyardServer, web_user: NewUser
) -> None:
    alice = web_user("tokenalice").sign_up()
    no_scope = alice.submit("/settings", "/settings/tokens", {"name": "x", "expiry": "30"})
    assert no_scope.status_code == 400
    assert alert_of(no_scope) == "Scopes must be some of read, write, delete."
    made = alice.submit(
        "/settings", "/settings/tokens", {"name": "ci", "scopes": ["read"], "expiry": "30"}
    )
    assert made.status_code == 201
    token = re.search(r'<code id="new-token">(dyk_[^<]+)</code>', made.text)
    assert token, made.text
    secret = token.group(1)
    listing = alice.get("/settings").text
    assert secret not in listing
    assert re.search(r"<td>ci</td>\s*<td><span class=\"badge\">read</span>", listing)
    scope = "repository:tokenalice/app:pull,push"
    granted = httpx.get(
        f"{hub_server.url}/token", params={"scope": scope}, auth=("tokenalice", secret)
    )
    assert granted.status_code == 200
    claims = granted.json()["token"].split(".")[1]
    access = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["access"]
    assert access[0]["actions"] == ["pull"]  # a read token gets pull only, whatever it asks
    token_id = re.search(r"/settings/tokens/(\d+)/revoke", listing)
    assert token_id
    revoked = alice.submit("/settings", f"/settings/tokens/{token_id.group(1)}/revoke", {})
    assert revoked.status_code == 303
    assert "<td>ci</td>" not in alice.get("/settings").text
    refused = httpx.get(
        f"{hub_server.url}/token", params={"scope": scope}, auth=("tokenalice", secret)
    )
    assert refused.status_code == 401

    new = "a much better password"
    for data, message in (
        ({"old_password": "wrong one!", "new_password": new, "confirm_password": new}, None),
        ({"old_password": PASSWORD, "new_password": new, "confirm_password": new + "x"},
         "The two new passwords differ."),
    ):  # fmt: skip
        failed = alice.submit("/settings", "/settings/password", data)
        assert failed.status_code == 400
        if message:
            assert alert_of(failed) == message
    changed = alice.submit(
        "/settings",
        "/settings/password",
        {"old_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert changed.headers["location"] == "/settings?done=password"
    assert alert_of(alice.get("/settings?done=password")) == "Your password was changed."
    assert httpx.get(f"{hub_server.url}/token", auth=("tokenalice", new)).status_code == 200

    kept = alice.submit("/settings", "/settings/delete", {"password": PASSWORD})
    assert kept.status_code == 403
    assert alice.get("/u/tokenalice").status_code == 200
    deleted = alice.submit("/settings", "/settings/delete", {"password": new})
    assert deleted.status_code == 303
    assert alice.get("/u/tokenalice").status_code == 404
    assert alice.get("/settings").status_code == 303  # signed out
    assert httpx.get(f"{hub_server.url}/token", auth=("tokenalice", new)).status_code == 401


def test_log_in_and_out(hub_server: DockyardServer, web_user: NewUser) -> None:
    alice = web_user("loginalice").sign_up()
    out = alice.submit("/settings", "/logout", {})
    assert out.status_code == 303
    assert alice.get("/settings").headers["location"] == "/login?next=/settings"
    token_as_password = alice.submit(
        "/login", "/login", {"username": "loginalice", "password": "dyk_something"}
    )
    assert token_as_password.status_code == 400
    evil = alice.submit(
        "/login",
        "/login",
        {"username": "loginalice", "password": PASSWORD, "next": "//evil.example/x"},
    )
    assert evil.status_code == 303
    assert evil.headers["location"] == "/"  # never off-site
    alice.submit("/settings", "/logout", {})
    back = alice.submit(
        "/login", "/login", {"username": "loginalice", "password": PASSWORD, "next": "/settings"}
    )
    assert back.headers["location"] == "/settings"
    assert alice.get("/settings").status_code == 200


def test_organisation_repository_team_permissions(
    hub_server: DockyardServer, web_user: NewUser
) -> None:
    alice = web_user("orgalice").sign_up()
    bobby = web_user("orgbobby").sign_up()
    api = f"{hub_server.url}/api/v1"
    owner = ("orgalice", PASSWORD)
    assert httpx.post(f"{api}/orgs", json={"name": "shipyard"}, auth=owner).status_code == 201
    team = httpx.post(f"{api}/orgs/shipyard/teams", json={"name": "crew"}, auth=owner)
    assert team.status_code == 201
    joined = httpx.put(f"{api}/orgs/shipyard/teams/crew/members/orgbobby", auth=owner)
    assert joined.status_code == 204
    made = alice.submit(
        "/new?namespace=shipyard",
        "/new",
        {"namespace": "shipyard", "name": "engine", "visibility": "private"},
    )
    assert made.headers["location"] == "/r/shipyard/engine"
    page = "/r/shipyard/engine"
    assert bobby.get(page).status_code == 404

    settings = alice.get(page + "/-/settings").text
    assert "Team permissions" in settings and "Collaborators" not in settings
    assert re.search(r'<option value="" selected>no access</option>', settings)
    granted = alice.submit(
        page + "/-/settings", page + "/-/teams", {"team": "crew", "role": "read"}
    )
    assert granted.status_code == 303
    assert re.search(
        r'<option value="read" selected>read</option>', alice.get(page + "/-/settings").text
    )
    assert bobby.get(page).status_code == 200
    assert bobby.get(page + "/-/settings").status_code == 404
    unknown = alice.submit(
        page + "/-/settings", page + "/-/teams", {"team": "ghosts", "role": "read"}
    )
    assert unknown.status_code == 400
    assert "ghosts" in alert_of(unknown)
    removed = alice.submit(page + "/-/settings", page + "/-/teams", {"team": "crew", "role": ""})
    assert removed.status_code == 303
    assert bobby.get(page).status_code == 404
    assert "engine" in alice.get("/u/shipyard").text
    assert "engine" not in bobby.get("/u/shipyard").text
