"""The Builds tab in a real browser: link a git repository, add a rule, push, watch the log
stream in, see success."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.builds.gitserver import GitServer
from tests.builds.test_end_to_end import push_base
from tests.client.conftest import cli_env, rootfs_tarball  # noqa: F401 - fixtures
from tests.conftest import DockyardServer, DockyardServerFactory
from tests.web.test_browser import LAPTOP, browser, sign_up  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="builds need root (runc, overlayfs)"),
]


def test_link_add_a_rule_push_and_watch_the_build(
    dockyard_server: DockyardServerFactory,
    browser: Browser,  # noqa: F811
    rootfs_tarball: Path,  # noqa: F811
    cli_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    hub: DockyardServer = dockyard_server("--auth", "hub", "--allow-local-sources")
    page = browser.new_context(viewport=LAPTOP).new_page()
    sign_up(page, hub.url, "builder")
    base = push_base(hub, rootfs_tarball, cli_env, user="builder")
    git_server = GitServer(tmp_path / "git", branch="main")
    git_server.commit({"README.md": "# app\n"}, "Start")
    git_server.push()

    page.goto(f"{hub.url}/new")
    page.fill("input[name=name]", "app")
    page.click("main form button[type=submit]")
    repo_url = f"{hub.url}/r/builder/app"
    page.wait_for_url(repo_url)
    page.click("nav.tabs >> text=Builds")
    page.fill("#link-form input[name=url]", str(git_server.bare))
    page.click("#link-form button[type=submit]")
    webhook_url = page.locator("#webhook-url").inner_text()
    secret = page.locator("#webhook-secret").inner_text()
    assert webhook_url.startswith(hub.url + "/hooks/") and len(secret) >= 32
    git_server.install_hook(webhook_url, secret)

    page.goto(repo_url + "/-/builds")
    assert page.locator("input[name=source_name0]").input_value() == "main"
    page.select_option("select[name=source_type_new]", "tag")
    page.fill("input[name=source_name_new]", "/^release-(.*)$/")
    page.fill("input[name=docker_tag_new]", "{\\1},stable")
    page.uncheck("input[name=cache_new]")  # so it runs its steps while the branch build is cached
    page.click("#rules-form button[type=submit]")
    expect(page.locator(".alert.ok")).to_have_text("Rules saved.")
    assert page.locator("input[name=source_name1]").input_value() == "/^release-(.*)$/"
    assert page.locator("input[name=docker_tag1]").input_value() == "{\\1},stable"
    assert not page.locator("input[name=cache1]").is_checked()

    git_server.commit(
        {
            "Dockerfile": f"FROM {base}\n"
            "RUN for i in 1 2 3; do echo counting $i; sleep 1; done\n"
            'CMD ["echo", "released"]\n'
        },
        "A Dockerfile that takes a moment",
    )
    git_server.tag("release-2.0")
    assert "webhook: 202" in git_server.push("main", "release-2.0")

    page.goto(repo_url + "/-/builds")
    rows = page.locator("table.builds tbody tr")
    expect(rows).to_have_count(2)
    tagged = rows.filter(has_text="release-2.0")
    assert "2.0" in tagged.inner_text() and "stable" in tagged.inner_text()
    tagged.locator("a").first.click()

    log = page.locator("#build-log")
    expect(log).to_contain_text("counting 2", timeout=120_000)
    streamed_before_the_end = page.locator("#build-status").inner_text() != "success"
    expect(page.locator("#build-status")).to_have_text("success", timeout=120_000)
    assert streamed_before_the_end, "the log only appeared once the build had ended"
    text = page.locator("#build-log").inner_text()
    assert "Successfully built" in text and "Build finished: pushed 2.0, stable" in text
    page.screenshot(path="/tmp/web-build.png", full_page=True)

    page.goto(repo_url + "/-/tags")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tags = page.locator("table.tags tbody").inner_text()
        if all(name in tags for name in ("2.0", "stable", "latest")):
            break
        time.sleep(1)
        page.reload()
    for name in ("2.0", "stable", "latest"):
        assert name in page.locator("table.tags tbody").inner_text()
    expect(page.locator(".repo-title .badge", has_text="Automated")).to_have_count(1)


