"""HTTP for automated builds: sources and rules, builds and logs, triggers, webhooks, workers."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.builds.queue import FINISHED, Build
from dockyard.builds.rules import Rule, RuleError
from dockyard.builds.service import Builds
from dockyard.builds.sources import SourceError
from dockyard.builds.webhooks import WebhookRejected
from dockyard.hub.api import (
    ApiError,
    administered_repository,
    endpoint,
    principal,
    read_json,
    readable_repository,
)
from dockyard.hub.repositories import RepositoryInfo

REPO = "/api/v1/repositories/{name:path}"


def _builds(request: Request) -> Builds:
    return request.app.state.builds


def _rule_json(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "source_type": rule.source_type,
        "source_name": rule.source_name,
        "docker_tag": rule.docker_tag,
        "dockerfile": rule.dockerfile,
        "context": rule.context,
        "autobuild": rule.autobuild,
        "cache": rule.cache,
    }


def _rules(value: Any) -> list[Rule]:
    if not isinstance(value, list):
        raise ApiError(400, "rules must be a list")
    rules = []
    for item in value:
        if not isinstance(item, dict):
            raise ApiError(400, "each rule must be an object")
        try:
            rules.append(
                Rule(
                    str(item.get("source_type", "branch")).lower(),
                    str(item["source_name"]),
                    str(item.get("docker_tag", "latest")),
                    str(item.get("dockerfile", "Dockerfile")),
                    str(item.get("context", "/")),
                    bool(item.get("autobuild", True)),
                    bool(item.get("cache", True)),
                ).check()
            )
        except KeyError:
            raise ApiError(400, "each rule needs a source_name") from None
        except RuleError as exc:
            raise ApiError(400, str(exc)) from None
    return rules


def build_json(build: Build, info: RepositoryInfo | None = None) -> dict[str, Any]:
    return {
        "id": build.id,
        "repository": info.display_name if info else None,
        "status": build.status,
        "source_type": build.source_type,
        "source_ref": build.source_ref,
        "commit": build.commit,
        "commit_message": build.commit_message,
        "docker_tags": list(build.docker_tags),
        "dockerfile": build.dockerfile,
        "context": build.context,
        "trigger": build.trigger,
        "attempt": build.attempt,
        "worker": build.worker,
        "error": build.error,
        "failed_step": build.failed_step,
        "created_at": build.created_at,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
    }


def _base_url(request: Request) -> str:
    public = request.app.state.hub.public_url
    return public.rstrip("/") if public else str(request.base_url).rstrip("/")


@endpoint
async def link_source(request: Request) -> Response:
    _, _, info = await administered_repository(request)
    body = await read_json(request)
    builds = _builds(request)
    rules = _rules(body["rules"]) if "rules" in body else None
    try:
        linked = await builds.link(
            info,
            str(body.get("url", "")),
            str(body.get("auth", "none")),
            body.get("username"),
            body.get("token"),
            rules,
        )
    except SourceError as exc:
        raise ApiError(400, str(exc)) from None
    base = _base_url(request)
    return JSONResponse(
        {
            "url": linked.source.url,
            "auth": linked.source.auth_kind,
            "public_key": linked.source.public_key,
            "webhook_url": f"{base}/hooks/{linked.source.id}",
            "webhook_secret": linked.webhook_secret,
            "trigger_url": f"{base}/api/v1/trigger/{linked.trigger_token}",
            "rules": [_rule_json(r) for r in await builds.sources.rules(linked.source.id)],
        },
        status_code=201,
    )


@endpoint
async def get_source(request: Request) -> Response:
    _, _, info = await administered_repository(request)
    builds = _builds(request)
    source = await builds.sources.for_repository(info.id)
    if source is None:
        raise ApiError(404, "no source is linked")
    return JSONResponse(
        {
            "url": source.url,
            "auth": source.auth_kind,
            "username": source.username,
            "webhook_url": f"{_base_url(request)}/hooks/{source.id}",
            "rules": [_rule_json(r) for r in await builds.sources.rules(source.id)],
        }
    )


@endpoint
async def unlink_source(request: Request) -> Response:
    _, _, info = await administered_repository(request)
    if not await _builds(request).unlink(info):
        raise ApiError(404, "no source is linked")
    return Response(status_code=204)


@endpoint
async def set_rules(request: Request) -> Response:
    _, _, info = await administered_repository(request)
    builds = _builds(request)
    source = await builds.sources.for_repository(info.id)
    if source is None:
        raise ApiError(404, "no source is linked")
    rules = await builds.sources.set_rules(
        source.id, _rules((await read_json(request)).get("rules"))
    )
    return JSONResponse({"rules": [_rule_json(r) for r in rules]})


@endpoint
async def build_now(request: Request) -> Response:
    _, _, info = await administered_repository(request)
    builds = _builds(request)
    source = await builds.sources.for_repository(info.id)
    if source is None:
        raise ApiError(404, "no source is linked")
    if not builds.limiter.allow(info.id):
        raise ApiError(429, "too many builds started; wait a minute")
    body = await read_json(request)
    source_type = body.get("source_type")
    ref = body.get("source_name")
    if source_type is not None and str(source_type).lower() not in ("branch", "tag"):
        raise ApiError(400, "source_type must be branch or tag")
    ids = await builds.build_now(
        source,
        str(source_type).lower() if source_type else None,
        str(ref) if ref else None,
        "manual",
    )
    return JSONResponse({"builds": ids}, status_code=202)


@endpoint
async def list_builds(request: Request) -> Response:
    _, _, info = await readable_repository(request)
    builds = await _builds(request).queue.for_repository(info.id)
    return JSONResponse([build_json(b, info) for b in builds])


async def _visible_build(request: Request) -> tuple[Builds, Build, RepositoryInfo]:
    builds = _builds(request)
    try:
        build = await builds.queue.get(int(request.path_params["build_id"]))
    except ValueError:
        build = None
    info = await builds.hub.repositories.get_by_id(build.repository_id) if build else None
    who = await principal(request)
    if build is None or info is None or not await builds.hub.permissions.can_read(who, info.name):
        raise ApiError(404, "not found")
    return builds, build, info


@endpoint
async def get_build(request: Request) -> Response:
    _, build, info = await _visible_build(request)
    return JSONResponse(build_json(build, info))


@endpoint
async def build_logs(request: Request) -> Response:
    builds, build, _ = await _visible_build(request)
    try:
        after = int(request.query_params.get("after", "0"))
    except ValueError:
        raise ApiError(400, "after must be a number") from None
    if request.query_params.get("follow") not in ("1", "true"):
        lines = await builds.queue.logs(build.id, after)
        return JSONResponse(
            {"status": build.status, "entries": [{"seq": n, "text": t} for n, t in lines]}
        )
    return StreamingResponse(_follow(builds, build.id, after), media_type="text/plain")


async def _follow(builds: Builds, build_id: int, after: int) -> AsyncIterator[bytes]:
    """The log as it grows, until the build has finished and every line is out."""
    while True:
        for seq, text in await builds.queue.logs(build_id, after):
            after = seq
            yield text.encode()
        build = await builds.queue.get(build_id)
        if build is None or build.status in FINISHED:
            for seq, text in await builds.queue.logs(build_id, after):
                after = seq
                yield text.encode()
            return
        await asyncio.sleep(0.25)


async def _administered_build(request: Request) -> tuple[Builds, Build]:
    builds, build, info = await _visible_build(request)
    who = await principal(request)
    if not await builds.hub.permissions.can_admin(who, info.name):
        raise ApiError(403, "you need admin rights on this repository")
    return builds, build


@endpoint
async def cancel_build(request: Request) -> Response:
    builds, build = await _administered_build(request)
    if not await builds.queue.cancel(build.id):
        raise ApiError(409, f"the build is already {build.status}")
    await builds.queue.append_log(build.id, "Build cancelled\n")
    await builds.finished(build.id)
    return Response(status_code=204)


@endpoint
async def retry_build(request: Request) -> Response:
    builds, build = await _administered_build(request)
    new = await builds.queue.retry(build.id)
    if new is None:
        raise ApiError(409, "only a finished build can be retried")
    return JSONResponse({"builds": [new]}, status_code=202)


async def webhook(request: Request) -> Response:
    builds = _builds(request)
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        source_id = int(request.path_params["source_id"])
        ids = await builds.on_webhook(source_id, headers, body)
    except (ValueError, WebhookRejected) as exc:
        return JSONResponse({"error": str(exc) or "rejected"}, status_code=403)
    return JSONResponse({"builds": ids}, status_code=202 if ids else 200)


async def trigger(request: Request) -> Response:
    builds = _builds(request)
    source = await builds.sources.by_trigger_token(request.path_params["token"])
    if source is None:
        return JSONResponse({"error": "unknown trigger"}, status_code=404)
    if not builds.limiter.allow(source.repository_id):
        return JSONResponse({"error": "too many triggers; wait a minute"}, status_code=429)
    try:
        body = await read_json(request)
    except ApiError as exc:
        return JSONResponse({"error": exc.message}, status_code=exc.status)
    ids = await builds.on_trigger(request.path_params["token"], body) or []
    return JSONResponse({"builds": ids}, status_code=202)


@endpoint
async def webhooks(request: Request) -> Response:
    _, _, info = await administered_repository(request)
    notifier = _builds(request).notifier
    if request.method == "POST":
        body = await read_json(request)
        try:
            hook = await notifier.add_webhook(
                info.id, str(body.get("name", "")), str(body.get("url", ""))
            )
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return JSONResponse({"id": hook}, status_code=201)
    return JSONResponse(await notifier.webhooks(info.id))


@endpoint
async def remove_webhook(request: Request) -> Response:
    _, _, info = await administered_repository(request)
    try:
        hook = int(request.path_params["hook_id"])
    except ValueError:
        raise ApiError(404, "not found") from None
    if not await _builds(request).notifier.remove_webhook(info.id, hook):
        raise ApiError(404, "not found")
    return Response(status_code=204)


def _worker(request: Request) -> Builds:
    builds = _builds(request)
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not builds.worker_token or not hmac.compare_digest(
        given.encode(), builds.worker_token.encode()
    ):
        raise ApiError(401, "a worker must send the hub's worker token")
    return builds


@endpoint
async def worker_lease(request: Request) -> Response:
    builds = _worker(request)
    name = str((await read_json(request)).get("worker", "remote"))[:200]
    job = await builds.lease(name, registry=_base_url(request))
    if job is None:
        return Response(status_code=204)
    return JSONResponse(job.to_json())


async def _lease_body(request: Request) -> tuple[Builds, int, dict[str, Any]]:
    builds = _worker(request)
    body = await read_json(request)
    try:
        return builds, int(request.path_params["build_id"]), body
    except ValueError:
        raise ApiError(404, "not found") from None


@endpoint
async def worker_heartbeat(request: Request) -> Response:
    builds, build_id, body = await _lease_body(request)
    alive = await builds.queue.heartbeat(
        build_id, str(body.get("lease_token")), builds.lease_seconds, body.get("status")
    )
    return JSONResponse({"alive": alive})


@endpoint
async def worker_log(request: Request) -> Response:
    builds, build_id, body = await _lease_body(request)
    ok = await builds.queue.append_log(
        build_id, str(body.get("text", "")), str(body.get("lease_token"))
    )
    return JSONResponse({"alive": ok})


@endpoint
async def worker_finish(request: Request) -> Response:
    builds, build_id, body = await _lease_body(request)
    try:
        done = await builds.queue.finish(
            build_id,
            str(body.get("lease_token")),
            str(body.get("status")),
            body.get("error"),
            body.get("step"),
        )
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if done:
        await builds.finished(build_id)
    return JSONResponse({"accepted": done})


routes = [
    Route(REPO + "/source/rules", set_rules, methods=["PUT"]),
    Route(REPO + "/source", link_source, methods=["POST"]),
    Route(REPO + "/source", get_source, methods=["GET"]),
    Route(REPO + "/source", unlink_source, methods=["DELETE"]),
    Route(REPO + "/builds", build_now, methods=["POST"]),
    Route(REPO + "/builds", list_builds, methods=["GET"]),
    Route(REPO + "/webhooks/{hook_id}", remove_webhook, methods=["DELETE"]),
    Route(REPO + "/webhooks", webhooks, methods=["GET", "POST"]),
    Route("/api/v1/builds/{build_id}", get_build, methods=["GET"]),
    Route("/api/v1/builds/{build_id}/logs", build_logs, methods=["GET"]),
    Route("/api/v1/builds/{build_id}/cancel", cancel_build, methods=["POST"]),
    Route("/api/v1/builds/{build_id}/retry", retry_build, methods=["POST"]),
    Route("/api/v1/trigger/{token}", trigger, methods=["POST"]),
    Route("/hooks/{source_id}", webhook, methods=["POST"]),
    Route("/api/v1/worker/lease", worker_lease, methods=["POST"]),
    Route("/api/v1/worker/builds/{build_id}/heartbeat", worker_heartbeat, methods=["POST"]),
    Route("/api/v1/worker/builds/{build_id}/log", worker_log, methods=["POST"]),
    Route("/api/v1/worker/builds/{build_id}/finish", worker_finish, methods=["POST"]),
]
