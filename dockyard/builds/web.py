"""The Builds tab of a repository page: link a git source, edit build rules, build now,
the build list, and one build's details with its log streaming live.

Everyone who may read the repository sees its builds (as on Docker Hub); linking, rules,
Build now, cancel and retry are for its admins. The log streams from the JSON API
(`/api/v1/builds/ID/logs?follow=1`), which honours the web session.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.builds.queue import FINISHED, Build
from dockyard.builds.rules import BRANCH, TAG, Rule, RuleError
from dockyard.builds.service import Builds
from dockyard.builds.sources import SourceError
from dockyard.hub.repositories import RepositoryInfo
from dockyard.hub.web.pages import (
    NotFound,
    PageError,
    RepositoryTab,
    add_repository_tab,
    add_templates,
    form,
    hub_of,
    page,
    see_other,
    text,
)
from dockyard.hub.web.repository_pages import (
    BASE,
    readable_repository,
    repository_page,
    repository_url,
)

TEMPLATES = Path(__file__).parent / "templates"
TAB = RepositoryTab("Builds", "builds")


def _builds(request: Request) -> Builds:
    return request.app.state.builds


def _base_url(request: Request) -> str:
    public = hub_of(request).public_url
    return public.rstrip("/") if public else str(request.base_url).rstrip("/")


async def _admin(request: Request) -> RepositoryInfo:
    hub, principal, info = await readable_repository(request)
    if not await hub.permissions.can_admin(principal, info.name):
        raise NotFound()
    return info


def _checkbox(data: FormData, key: str) -> bool:
    return text(data, key) in ("on", "1", "true")


async def _builds_page(
    request: Request,
    info: RepositoryInfo,
    status: int = 200,
    error: str | None = None,
    linked: dict[str, str] | None = None,
) -> Response:
    builds = _builds(request)
    source = await builds.sources.for_repository(info.id)
    rules = await builds.sources.rules(source.id) if source else []
    notice = {"built": "Build queued.", "rules": "Rules saved."}.get(
        request.query_params.get("done", "")
    )
    return await repository_page(
        request,
        info,
        TAB.suffix,
        "builds.html",
        status,
        source=source,
        rules=rules,
        builds=(await builds.queue.for_repository(info.id))[:50],
        webhook_url=f"{_base_url(request)}/hooks/{source.id}" if source else "",
        linked=linked,
        error=error,
        notice=notice,
    )


@page
async def builds_tab(request: Request) -> Response:
    _, _, info = await readable_repository(request)
    return await _builds_page(request, info)


@page
async def link(request: Request) -> Response:
    info = await _admin(request)
    data = await form(request)
    auth = text(data, "auth", "none")
    try:
        linked = await _builds(request).link(
            info, text(data, "url").strip(), auth, text(data, "username") or None,
            text(data, "token") or None,
        )  # fmt: skip
    except SourceError as exc:
        return await _builds_page(request, info, 400, error=str(exc))
    base = _base_url(request)
    shown = {
        "webhook_url": f"{base}/hooks/{linked.source.id}",
        "webhook_secret": linked.webhook_secret,
        "trigger_url": f"{base}/api/v1/trigger/{linked.trigger_token}",
        "public_key": linked.source.public_key or "",
    }
    refreshed = await hub_of(request).repositories.get_by_id(info.id)
    return await _builds_page(request, refreshed or info, 201, linked=shown)


@page
async def unlink(request: Request) -> Response:
    info = await _admin(request)
    await form(request)
    await _builds(request).unlink(info)
    return see_other(repository_url(info, TAB.suffix))


def _rule_from(data: FormData, index: str) -> Rule:
    def value(key: str, default: str) -> str:
        return text(data, f"{key}{index}").strip() or default

    return Rule(
        value("source_type", BRANCH).lower(),
        value("source_name", ""),
        value("docker_tag", "latest"),
        value("dockerfile", "Dockerfile"),
        value("context", "/"),
        _checkbox(data, f"autobuild{index}"),
        _checkbox(data, f"cache{index}"),
    )


@page
async def save_rules(request: Request) -> Response:
    """The whole rule list as posted: rows 0…N-1, a row whose `remove` box is ticked dropped,
    and a new row appended when its source name is filled in."""
    info = await _admin(request)
    data = await form(request)
    builds = _builds(request)
    source = await builds.sources.for_repository(info.id)
    if source is None:
        raise NotFound()
    try:
        count = min(int(text(data, "count", "0")), 50)
    except ValueError:
        count = 0
    rules = [
        _rule_from(data, str(index))
        for index in range(count)
        if not _checkbox(data, f"remove{index}")
    ]
    if text(data, "source_name_new").strip():
        rules.append(_rule_from(data, "_new"))
    try:
        checked = [rule.check() for rule in rules]
    except RuleError as exc:
        return await _builds_page(request, info, 400, error=str(exc))
    if not checked:
        return await _builds_page(request, info, 400, error="Keep at least one build rule.")
    await builds.sources.set_rules(source.id, checked)
    return see_other(repository_url(info, TAB.suffix) + "?done=rules")


@page
async def build_now(request: Request) -> Response:
    info = await _admin(request)
    data = await form(request)
    builds = _builds(request)
    source = await builds.sources.for_repository(info.id)
    if source is None:
        raise NotFound()
    if not builds.limiter.allow(info.id):
        message = "Too many builds started; wait a minute."
        return await _builds_page(request, info, 429, error=message)
    source_type = text(data, "source_type").lower() or None
    ref = text(data, "source_name") or None
    if source_type not in (None, BRANCH, TAG):
        raise PageError(400, "That did not work", "A source type is branch or tag.")
    await builds.build_now(source, source_type, ref, "manual")
    return see_other(repository_url(info, TAB.suffix) + "?done=built")


async def _build_of(request: Request, info: RepositoryInfo) -> Build:
    try:
        build = await _builds(request).queue.get(int(request.path_params["build_id"]))
    except ValueError:
        build = None
    if build is None or build.repository_id != info.id:
        raise NotFound()
    return build


@page
async def build_details(request: Request) -> Response:
    _, _, info = await readable_repository(request)
    build = await _build_of(request, info)
    rule = None
    if build.rule_id is not None:
        source = await _builds(request).sources.for_repository(info.id)
        rules = await _builds(request).sources.rules(source.id) if source else []
        rule = next((r for r in rules if r.id == build.rule_id), None)
    return await repository_page(
        request, info, TAB.suffix, "build.html", build=build, rule=rule,
        finished=build.status in FINISHED,
        log="".join(text for _, text in await _builds(request).queue.logs(build.id, 0)),
    )  # fmt: skip


@page
async def cancel(request: Request) -> Response:
    info = await _admin(request)
    await form(request)
    build = await _build_of(request, info)
    builds = _builds(request)
    if await builds.queue.cancel(build.id):
        await builds.queue.append_log(build.id, "Build cancelled\n")
        await builds.finished(build.id)
    return see_other(repository_url(info, f"builds/{build.id}"))


@page
async def retry(request: Request) -> Response:
    info = await _admin(request)
    await form(request)
    build = await _build_of(request, info)
    new = await _builds(request).queue.retry(build.id)
    return see_other(repository_url(info, f"builds/{new if new is not None else build.id}"))


routes = [
    Route(BASE + "/-/builds/link", link, methods=["POST"]),
    Route(BASE + "/-/builds/unlink", unlink, methods=["POST"]),
    Route(BASE + "/-/builds/rules", save_rules, methods=["POST"]),
    Route(BASE + "/-/builds/run", build_now, methods=["POST"]),
    Route(BASE + "/-/builds/{build_id:int}/cancel", cancel, methods=["POST"]),
    Route(BASE + "/-/builds/{build_id:int}/retry", retry, methods=["POST"]),
    Route(BASE + "/-/builds/{build_id:int}", build_details, methods=["GET"]),
    Route(BASE + "/-/builds", builds_tab, methods=["GET"]),
]


def install(app: Starlette) -> None:
    """Show the Builds tab on the hub app's repository pages (its routes go to web_routes)."""
    add_templates(TEMPLATES)
    add_repository_tab(app, TAB)
