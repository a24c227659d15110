"""The web UI in process (httpx over ASGI): email confirmation through a real SMTP server, and
the hook through which an upper layer adds a repository tab."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.hub.app import hub_app
from dockyard.hub.web import web_middleware, web_routes
from dockyard.hub.web.pages import RepositoryTab, add_repository_tab, add_templates, page
from dockyard.hub.web.repository_pages import BASE, readable_repository, repository_page
from tests.hub.conftest import HubClient, hub_settings, open_client
from tests.hub.test_api import smtp_server  # noqa: F401 - a fixture
from tests.web.conftest import PASSWORD

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def submit(http: httpx.AsyncClient, page_path: str, action: str, data: dict[str, str]):
    found = CSRF.search((await http.get(page_path)).text)
    assert found
    return await http.post(action, data={"csrf_token": found.group(1), **data})


async def close(client: HubClient, http: httpx.AsyncClient) -> None:
    await http.aclose()
    for task in client.app._tasks:
        task.cancel()
    assert client.app.registry is not None
    await client.app.registry.registry.meta.engine.dispose()


async def test_email_confirmation_page(
    tmp_path: Path,
    smtp_server: tuple[int, list[EmailMessage]],  # noqa: F811
) -> None:
    port, messages = smtp_server
    settings = hub_settings(
        tmp_path / "data", smtp_host="127.0.0.1", smtp_port=port, public_url="http://hub.test"
    )
    client, http = await open_client(settings)
    try:
        data = {"username": "mailalice", "email": "mail@example.com", "password": PASSWORD}
        signed_up = await submit(http, "/signup", "/signup", data)
        assert signed_up.status_code == 201
        assert "Check your email" in signed_up.text
        assert "mail@example.com" in signed_up.text
        assert (await http.get("/settings")).status_code == 303  # not signed in yet
        refused = await submit(
            http, "/login", "/login", {"username": "mailalice", "password": PASSWORD}
        )
        assert refused.status_code == 401
        assert len(messages) == 1
        link = re.search(r"http://hub\.test(/confirm/\S+)", messages[0].get_payload())
        assert link is not None
        confirmed = await http.get(link.group(1))
        assert confirmed.status_code == 200
        assert "Your account is active" in confirmed.text
        assert (await http.get("/settings")).status_code == 200  # signed in by the link
        again = await http.get(link.group(1))
        assert again.status_code == 404
        assert "Link not valid" in again.text
        assert (await http.get("/confirm/made-up")).status_code == 404
    finally:
        await close(client, http)


BUILDS_TEMPLATE = """{% extends "repository.html" %}
{% block tab_content %}<p id="builds">{{ summary }} of {{ repo.name }}</p>{% endblock %}
"""


@page
async def builds_page(request: Request) -> Response:
    _, _, info = await readable_repository(request)
    return await repository_page(request, info, "builds", "tab-test.html", summary="3 builds")


@pytest.fixture
async def tabbed(tmp_path: Path) -> AsyncIterator[httpx.ASGITransport]:
    """A hub app with a Builds tab for everyone and a Triggers tab for admins."""
    client, http = await open_client(hub_settings(tmp_path / "data"))
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "tab-test.html").write_text(BUILDS_TEMPLATE)
    add_templates(templates)
    hub = client.hub
    routes = web_routes(repository_routes=[Route(BASE + "/-/builds", builds_page)])
    app = hub_app(hub, routes, web_middleware(hub))
    add_repository_tab(app, RepositoryTab("Builds", "builds"))
    add_repository_tab(app, RepositoryTab("Triggers", "triggers", admin_only=True))
    yield httpx.ASGITransport(app=app)
    await close(client, http)


async def test_an_upper_layer_adds_a_repository_tab(tabbed: httpx.ASGITransport) -> None:
    async with (
        httpx.AsyncClient(transport=tabbed, base_url="http://hub.test") as owner,
        httpx.AsyncClient(transport=tabbed, base_url="http://hub.test") as anonymous,
    ):
        data = {"username": "tabalice", "email": "tab@example.com", "password": PASSWORD}
        assert (await submit(owner, "/signup", "/signup", data)).status_code == 303
        made = await submit(owner, "/new", "/new", {"namespace": "tabalice", "name": "app"})
        assert made.status_code == 303
        overview = (await owner.get("/r/tabalice/app")).text
        assert '<a href="/r/tabalice/app/-/builds" >Builds</a>' in overview
        assert ">Triggers</a>" in overview
        builds = await owner.get("/r/tabalice/app/-/builds")
        assert builds.status_code == 200
        assert '<p id="builds">3 builds of tabalice/app</p>' in builds.text
        assert '<a href="/r/tabalice/app/-/builds" aria-current="page">Builds</a>' in builds.text
        assert "docker pull hub.test/tabalice/app" in builds.text  # the shared header

        public = (await anonymous.get("/r/tabalice/app")).text
        assert ">Builds</a>" in public
        assert ">Triggers</a>" not in public  # admin_only
        private = {"visibility": "private", "description": "", "readme": ""}
        settings = "/r/tabalice/app/-/settings"
        assert (await submit(owner, settings, settings, private)).status_code == 303
        assert (await owner.get("/r/tabalice/app/-/builds")).status_code == 200
        assert (await anonymous.get("/r/tabalice/app/-/builds")).status_code == 404
