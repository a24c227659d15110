"""The web UI in a real browser (Playwright driving Debian's Chromium) with the docker CLI.

Sign up, create an access token, `docker login` with it and push, see the tag on the
repository page, make the repository private; a logged-out visitor and a second user then get
"not found". Screenshots land in /tmp/web-repo.png and /tmp/web-phone.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.clients.conftest import DockerCLI, docker, dockerd  # noqa: F401 - fixtures
from tests.clients.test_docker import busybox_rootfs, pushed_digest  # noqa: F401 - a fixture
from tests.conftest import DockyardServerFactory
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
README = """# Busybox from the hub

<script>alert("readme")</script>
<img src="missing.png" onerror="alert('img')">

Run it with `docker run --rm IMAGE busybox echo hi`.
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; run scripts/install-test-deps.sh", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def sign_up(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/signup")
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_url(f"{base}/u/{username}")


def assert_fits(page: Page) -> None:
    """Nothing makes the page scroll sideways (wide tables scroll inside their own box)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width}px wide on a phone"


def assert_not_found(page: Page, url: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status == 404
    assert page.locator("main h1").inner_text() == "Not found"


def test_sign_up_token_push_and_make_private(
    dockyard_server: DockyardServerFactory,
    docker: DockerCLI,  # noqa: F811
    busybox_rootfs: Path,  # noqa: F811
    browser: Browser,
) -> None:
    hub = dockyard_server("--auth", "hub")
    base = hub.url
    context = browser.new_context(viewport=LAPTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    sign_up(page, base, "webalice")
    assert page.locator("nav.topnav .me").inner_text() == "webalice"

    page.goto(f"{base}/settings")
    page.fill("input[name=name]", "laptop")
    page.click("#tokens form button[type=submit]")
    token = page.locator("#new-token").inner_text().strip()
    assert re.fullmatch(r"dyk_[A-Za-z0-9_-]{20,}", token), token
    page.goto(f"{base}/settings")
    assert "laptop" in page.locator("table.tokens").inner_text()
    assert token not in page.content()  # shown once, never again

    login = docker("login", hub.addr, "-u", "webalice", "--password-stdin", input=token + "\n")
    assert "Login Succeeded" in login.stdout
    image = f"{hub.addr}/webalice/busybox:v1"
    docker("import", str(busybox_rootfs), image)
    digest = pushed_digest(docker("push", image).stdout)

    repo_url = f"{base}/r/webalice/busybox"
    page.goto(repo_url + "/-/tags")
    row = page.locator("table.tags tbody tr").filter(has_text="v1")
    assert row.count() == 1
    cells = row.inner_text()
    assert digest.split(":", 1)[1][:12] in cells
    assert "linux/amd64" in cells
    assert "just now" in cells or "minute" in cells

    page.goto(repo_url)
    command = page.locator(".pull-commands code").first.inner_text()
    assert command == f"docker pull {hub.addr}/webalice/busybox"
    assert page.locator(".pull-commands code").nth(1).inner_text() == (
        f"dockyard pull {hub.addr}/webalice/busybox"
    )
    page.locator(".pull-commands button.copy").first.click()
    page.wait_for_function("document.querySelector('.pull-commands button.copy.copied')")
    assert page.evaluate("navigator.clipboard.readText()") == command

    page.goto(repo_url + "/-/settings")
    page.fill("input[name=description]", "Busybox, pushed from the docker CLI")
    page.fill("textarea[name=readme]", README)
    page.click("main .panel form button[type=submit] >> text=Save")
    page.wait_for_url(repo_url + "/-/settings?saved=1")
    page.goto(repo_url)
    assert page.locator(".markdown h1").inner_text() == "Busybox from the hub"
    assert page.locator(".markdown script").count() == 0
    page.wait_for_timeout(300)  # give a broken image's onerror the chance to fire
    assert dialogs == []
    page.screenshot(path="/tmp/web-repo.png", full_page=True)

    phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    phone_page = phone.new_page()
    phone_page.goto(repo_url + "/-/tags")
    assert_fits(phone_page)
    phone_page.goto(f"{base}/explore")
    assert "webalice/busybox" in phone_page.locator(".repo-list").inner_text()
    assert_fits(phone_page)
    phone_page.screenshot(path="/tmp/web-phone.png", full_page=True)
    phone.close()

    page.goto(repo_url + "/-/settings")
    page.check("input[name=visibility][value=private]")
    page.click("main .panel form button[type=submit] >> text=Save")
    page.wait_for_url(repo_url + "/-/settings?saved=1")
    assert page.locator(".repo-title .badge.private").inner_text().lower() == "private"

    visitor = browser.new_context(viewport=LAPTOP).new_page()
    assert_not_found(visitor, repo_url)
    assert_not_found(visitor, repo_url + "/-/tags")
    visitor.goto(f"{base}/search?q=busybox")
    assert "webalice/busybox" not in visitor.locator("main").inner_text()

    second = browser.new_context(viewport=LAPTOP).new_page()
    sign_up(second, base, "webbobby")
    assert_not_found(second, repo_url)
    assert_not_found(second, repo_url + "/-/settings")
    second.goto(f"{base}/u/webalice")
    assert "busybox" not in second.locator("main").inner_text()

    page.goto(repo_url)  # the owner still sees it
    assert page.locator(".repo-title h1").inner_text().startswith("busybox")
    context.close()
