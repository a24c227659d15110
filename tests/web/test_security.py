"""The web UI's defences against a real hub: CSRF, escaping, private pages, cookies, login limit."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx

from tests.conftest import DockyardServer, DockyardServerFactory
from tests.web.conftest import PASSWORD, WebUser, csrf_of

NewUser = Callable[[str], WebUser]


def main_of(page: httpx.Response) -> str:
    """The page's <main>: what differs between pages, without the shared header and footer."""
    found = re.search(r"<main[^>]*>(.*)</main>", page.text, re.S)
    assert found, page.text
    return found.group(1)


def test_forms_refuse_a_missing_or_foreign_csrf_token(
    hub_server: DockyardServer, web_user: NewUser
) -> None:
    alice = web_user("csrfalice").sign_up()
    stranger = web_user("")
    foreign = csrf_of(stranger.get("/signup"))  # a valid token, of another session
    for data in ({}, {"csrf_token": foreign}, {"csrf_token": ""}):
        created = alice.http.post("/new", data={**data, "namespace": alice.username, "name": "x"})
        assert created.status_code == 403
        assert "Form expired" in created.text
        token = alice.http.post("/settings/tokens", data={**data, "name": "t", "scopes": "read"})
        assert token.status_code == 403
        assert "dyk_" not in token.text
        assert alice.http.post("/logout", data=data).status_code == 403
    assert alice.get(f"/r/{alice.username}/x").status_code == 404
    assert alice.get("/settings").status_code == 200  # still signed in: logout was refused
    assert "No access tokens yet." in alice.get("/settings").text

    # The JSON API honours the session cookie for a change only with the X-CSRF-Token header.
    body = {"name": f"{alice.username}/api", "description": ""}
    assert alice.http.post("/api/v1/repositories", json=body).status_code == 401
    headers = {"x-csrf-token": foreign}
    assert alice.http.post("/api/v1/repositories", json=body, headers=headers).status_code == 401
    headers = {"x-csrf-token": csrf_of(alice.get("/settings"))}
    assert alice.http.post("/api/v1/repositories", json=body, headers=headers).status_code == 201

    accepted = alice.submit("/new", "/new", {"namespace": alice.username, "name": "x"})
    assert accepted.status_code == 303
    assert alice.get(f"/r/{alice.username}/x").status_code == 200


README_ATTACKS = """# Release notes

<script>alert("readme")</script>
<img src="x.png" onerror="alert('img')">
<a href="javascript:alert('link')">click</a>
[markdown link](javascript:alert('md'))
<iframe src="https://evil.example"></iframe>
<style>body { display: none }</style>
<div onclick="alert('div')" style="position:fixed">styled</div>
<a href="https://example.org/docs">docs</a>
"""


def test_script_in_readme_or_description_is_not_run(
    hub_server: DockyardServer, web_user: NewUser
) -> None:
    alice = web_user("xssalice").sign_up()
    description = '<script>alert("description")</script>'
    alice.create_repository("notes", description=description)
    page = f"/r/{alice.username}/notes"
    saved = alice.submit(
        page + "/-/settings",
        page + "/-/settings",
        {"visibility": "public", "description": description, "readme": README_ATTACKS},
    )
    assert saved.status_code == 303
    visitor = web_user("")
    for path in (page, "/explore", "/search?q=notes", f"/u/{alice.username}"):
        response = visitor.get(path)
        assert response.status_code == 200, path
        main = main_of(response)
        assert "<script" not in main.lower(), path
        assert "&lt;script&gt;alert(&#34;description&#34;)&lt;/script&gt;" in main, path
    main = main_of(visitor.get(page))
    lowered = main.lower()
    for forbidden in ("onerror", "onclick", '="javascript:', "<iframe", "<style", "style="):
        assert forbidden not in lowered, forbidden
    assert "[markdown link](javascript:" in main  # left as text, not made a link
    assert "<h1>Release notes</h1>" in main
    assert re.search(r'<a href="https://example.org/docs" rel="[^"]*noopener[^"]*">docs</a>', main)
    policy = visitor.get(page).headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    # The settings form shows the README as text to edit, escaped.
    settings = main_of(alice.get(page + "/-/settings"))
    assert "&lt;script&gt;alert(&#34;readme&#34;)&lt;/script&gt;" in settings


def test_private_repository_pages_are_not_found(
    hub_server: DockyardServer, web_user: NewUser
) -> None:
    alice = web_user("privalice").sign_up()
    bobby = web_user("privbobby").sign_up()
    anonymous = web_user("")
    alice.create_repository("secret", visibility="private", description="hidden thing")
    alice.create_repository("shown", description="public thing")
    base = f"/r/{alice.username}/secret"
    missing = f"/r/{alice.username}/nothing-here"
    assert alice.get(base).status_code == 200

    for visitor in (anonymous, bobby):
        reference = visitor.get(missing)
        assert reference.status_code == 404
        for path in (base, base + "/-/tags", base + "/-/settings"):
            response = visitor.get(path)
            assert response.status_code == 404, path
            assert main_of(response) == main_of(reference), path
        for path in ("/explore", "/search?q=thing", f"/u/{alice.username}"):
            listing = visitor.get(path).text
            assert "public thing" in listing, path
            assert "secret" not in listing and "hidden thing" not in listing, path
    for action, data in (
        ("/-/star", {"star": "1"}),
        ("/-/settings", {"visibility": "public", "description": "", "readme": ""}),
        ("/-/delete", {"confirm": f"{alice.username}/secret"}),
        ("/-/tags/latest/delete", {}),
        ("/-/collaborators", {"username": bobby.username, "role": "admin"}),
    ):
        refused = bobby.submit("/explore", base + action, data)
        assert refused.status_code == 404, action
        assert main_of(refused) == main_of(bobby.get(missing)), action
    owner_view = alice.get(base)
    assert owner_view.status_code == 200
    assert "Private" in owner_view.text

    # A read collaborator sees the pages but not the settings.
    added = alice.submit(
        base + "/-/settings",
        base + "/-/collaborators",
        {"username": bobby.username, "role": "read"},
    )
    assert added.status_code == 303
    assert bobby.get(base).status_code == 200
    assert bobby.get(base + "/-/tags").status_code == 200
    assert bobby.get(base + "/-/settings").status_code == 404
    assert 'href="' + base + '/-/settings"' not in bobby.get(base).text
    assert anonymous.get(base).status_code == 404


def _cookie_attributes(response: httpx.Response) -> list[str]:
    header = response.headers.get("set-cookie", "")
    assert header.startswith("dockyard_session="), header
    return [part.strip().lower() for part in header.split(";")[1:]]


def test_session_cookie_flags(hub_server: DockyardServer, web_user: NewUser) -> None:
    browser = web_user("cookiealice")
    first = browser.get("/signup")
    attributes = _cookie_attributes(first)
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes  # plain http here; Secure with an https public URL
    assert first.headers["x-frame-options"] == "DENY"
    assert first.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in first.headers["content-security-policy"]
    before = csrf_of(first)
    browser.sign_up()
    after = csrf_of(browser.get("/settings"))
    assert after != before  # a new CSRF token at sign-in
    # Machines get no session cookie.
    for path in ("/v2/", "/token", "/v1/search?q=x"):
        assert "set-cookie" not in httpx.get(hub_server.url + path).headers, path
    # A cookie that was tampered with is no session at all.
    value = browser.http.cookies["dockyard_session"]
    forged = httpx.get(
        hub_server.url + "/settings", cookies={"dockyard_session": value[:-2] + "xx"}
    )
    assert forged.status_code == 303
    assert forged.headers["location"].startswith("/login")


def test_login_rate_limit_is_shown_on_the_form(
    dockyard_server: DockyardServerFactory,
) -> None:
    hub = dockyard_server("--auth", "hub")
    carol = WebUser(hub, "carolweb").sign_up()
    carol.http.cookies.clear()
    for _ in range(5):
        wrong = carol.submit("/login", "/login", {"username": "carolweb", "password": "nope nope"})
        assert wrong.status_code == 401
        assert "Wrong username or password." in wrong.text
    limited = carol.submit("/login", "/login", {"username": "carolweb", "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    message = re.search(r'<p class="alert error" role="alert">([^<]*)</p>', limited.text)
    assert message and message.group(1).startswith("Too many failed attempts. Try again in")
    assert 'value="carolweb"' in limited.text  # the form keeps the username
    assert carol.get("/settings").status_code == 303  # not signed in
    carol.close()
