"""A build worker: lease a job, clone, build, push, report — heart-beating all along.

The builder and the registry client run as `dockyard` subprocesses over the worker's own
engine root, in their own process group, so a cancelled or abandoned build is killed whole
and its runc containers are removed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from dockyard.builder.errors import DockerfileParseError
from dockyard.builder.parser import parse
from dockyard.builds.jobs import Job, JobSource
from dockyard.builds.queue import BUILDING, CLONING, ERROR, FAILED, PUSHING, SUCCESS
from dockyard.builds.workdirs import remove_containers
from dockyard.client.registry import MANIFEST_ACCEPT
from dockyard.engine.store import Store, StoreError
from dockyard.oci.reference import InvalidReference

log = logging.getLogger("dockyard.builds")

Log = Callable[[str], Awaitable[None]]


class StepFailed(Exception):
    """A step of the build failed for a reason in the user's code (not the worker's)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def build_args(job: Job, tag: str) -> dict[str, str]:
    """The variables Docker Hub's autobuilds define, as build arguments."""
    repo = f"{job.registry_host}/{job.repository}" if job.registry_host else job.repository
    return {
        "SOURCE_BRANCH": job.source_ref,
        "SOURCE_COMMIT": job.commit or "",
        "COMMIT_MSG": (job.commit_message or "").strip(),
        "DOCKER_REPO": repo,
        "DOCKERFILE_PATH": job.dockerfile,
        "DOCKER_TAG": tag,
        "IMAGE_NAME": f"{repo}:{tag}",
    }


async def _registry_has(job: Job, tag: str) -> bool:
    """Whether the registry has the tag (a HEAD, much cheaper than a failing pull)."""
    url = f"{job.registry.rstrip('/')}/v2/{job.repository}/manifests/{tag}"
    headers = {"Authorization": f"Bearer {job.registry_token}", "Accept": MANIFEST_ACCEPT}
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            return (await client.head(url, headers=headers)).status_code == 200
    except httpx.HTTPError:
        return True  # let the pull try, and say what went wrong


def declared_args(dockerfile: Path) -> set[str] | None:
    """The ARG names a Dockerfile declares, so only those of Docker Hub's variables are passed
    (and the builder does not warn about the others); None when it cannot be read."""
    try:
        parsed = parse(dockerfile.read_text(errors="replace"))
    except (OSError, DockerfileParseError):
        return None
    return {
        word.split("=", 1)[0]
        for instruction in parsed.instructions
        if instruction.keyword == "ARG"
        for word in instruction.words()
    }


class Worker:
    def __init__(self, source: JobSource, root: Path, name: str, poll: float = 1.0) -> None:
        """ROOT must be claimed (claim_work_dir) by this process."""
        self.source = source
        self.root = root
        self.name = name
        self.poll = poll

    async def run_forever(self) -> None:
        await self._clean_containers()  # a previous holder of the work dir may have crashed
        while True:
            try:
                job = await self.source.lease()
            except Exception:
                log.exception("leasing a build failed worker=%s", self.name)
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.source.work_changed(), self.poll)
                continue
            await self.run(job)

    async def run(self, job: Job) -> None:
        """Run one leased job to its end, or until its lease is lost."""
        status = {"value": CLONING}
        task = asyncio.create_task(self._steps(job, status))
        beat = asyncio.create_task(self._heartbeat(job, status, task))
        try:
            outcome, error, step = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():
                log.info("build lost its lease or was cancelled build=%d", job.build_id)
                return
            # The worker itself is stopping: let the build kill its containers first.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        finally:
            beat.cancel()
        await self.source.finish(job, outcome, error, step)
        log.info("build finished build=%d status=%s", job.build_id, outcome)

    async def _heartbeat(self, job: Job, status: dict[str, str], task: asyncio.Task) -> None:
        interval = max(job.lease_seconds / 3, 0.5)
        while not task.done():
            await asyncio.sleep(interval)
            try:
                alive = await self.source.heartbeat(job, status["value"])
            except Exception:
                log.warning("heartbeat failed build=%d; retrying", job.build_id)
                continue
            if not alive:
                task.cancel()
                return

    async def _steps(self, job: Job, status: dict[str, str]) -> tuple[str, str | None, str | None]:
        async def say(text: str) -> None:
            await self.source.log(job, text)

        work = Path(tempfile.mkdtemp(prefix=f"build-{job.build_id}-", dir=self.root))
        try:
            await say(
                f"Build {job.build_id}: {job.repository} from {job.source_type} "
                f"{job.source_ref} ({job.commit or 'head'})\n"
            )
            checkout = work / "source"
            await self._clone(job, checkout, work, say)
            status["value"] = BUILDING
            await self.source.heartbeat(job, BUILDING)
            registry_env = self._registry_env(job, work)
            await self._build(job, checkout, registry_env, say)
            status["value"] = PUSHING
            await self.source.heartbeat(job, PUSHING)
            await self._push(job, registry_env, say)
            await say("Build finished: pushed " + ", ".join(job.docker_tags) + "\n")
            return SUCCESS, None, None
        except StepFailed as failure:
            await say(f"Build failed: {failure}\n")
            return FAILED, str(failure), failure.step
        except asyncio.CancelledError:
            await self._clean_containers()
            raise
        except Exception as exc:
            log.exception("build errored build=%d", job.build_id)
            with contextlib.suppress(Exception):
                await say(f"Build errored in the worker: {exc}\n")
            return ERROR, str(exc), None
        finally:
            shutil.rmtree(work, ignore_errors=True)

    async def _clone(self, job: Job, checkout: Path, work: Path, say: Log) -> None:
        env = {
            **os.environ,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ALLOW_PROTOCOL": "https:http:ssh:git:file",
        }
        env.pop("GIT_DIR", None)
        if job.auth_kind == "token" and job.credential:
            basic = base64.b64encode(f"{job.username}:{job.credential}".encode()).decode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        elif job.auth_kind == "ssh" and job.credential:
            key = work / "deploy-key"
            key.touch(mode=0o600)
            key.write_text(job.credential)
            known = work / "known_hosts"
            env["GIT_SSH_COMMAND"] = (
                f"ssh -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new "
                f"-o UserKnownHostsFile={known}"
            )
        ref = ("refs/heads/" if job.source_type == "branch" else "refs/tags/") + job.source_ref
        await say(f"Cloning {job.url} {ref}\n")
        checkout.mkdir()
        git = ["git", "-C", str(checkout)]
        for command in (
            [*git, "init", "-q"],
            [*git, "fetch", "-q", "--depth", "50", "--", job.url, f"+{ref}:refs/dockyard/build"],
        ):
            await self._command(command, env, say, step="clone", show=False)
        target = job.commit or "refs/dockyard/build"
        if job.commit:
            found = await self._command(
                [*git, "cat-file", "-e", f"{job.commit}^{{commit}}"],
                env,
                say,
                step="clone",
                show=False,
                check=False,
            )
            if found != 0:
                await say(f"Commit {job.commit} is not on {ref} any more; building its head\n")
                target = "refs/dockyard/build"
        await self._command([*git, "checkout", "-q", "--detach", target], env, say, "clone", False)

    async def _build(
        self, job: Job, checkout: Path, registry_env: dict[str, str], say: Log
    ) -> None:
        context = (checkout / job.context.strip("/")).resolve()
        dockerfile = (context / job.dockerfile).resolve()
        for path, what in ((context, "build context"), (dockerfile, "Dockerfile")):
            if not path.is_relative_to(checkout.resolve()) or not path.exists():
                raise StepFailed("build", f"the {what} {path.relative_to(checkout)} is missing")
        command = [*self._dockyard(), "build", "-f", str(dockerfile)]
        for tag in job.docker_tags:
            command += ["-t", f"{job.registry_host}/{job.repository}:{tag}"]
        declared = declared_args(dockerfile)
        for key, value in build_args(job, job.docker_tags[0]).items():
            if declared is None or key in declared:
                command += ["--build-arg", f"{key}={value}"]
        if not job.cache:
            command.append("--no-cache")
        elif previous := await self._previous_image(job, registry_env, say):
            command += ["--cache-from", previous]
        command.append(str(context))
        await self._command(command, dict(os.environ), say, step="build")

    async def _previous_image(self, job: Job, registry_env: dict[str, str], say: Log) -> str | None:
        """The rule's previous image as the build cache: the one this worker built, or else
        the one in the registry (built by another worker, or before this one started)."""
        previous = f"{job.registry_host}/{job.repository}:{job.docker_tags[0]}"
        with contextlib.suppress(StoreError, InvalidReference):
            Store(self.root / "engine").resolve_image(previous)
            return previous
        if not await _registry_has(job, job.docker_tags[0]):
            return None
        pull = [*self._dockyard(), "pull", previous]
        if await self._command(pull, registry_env, say, step="build", show=False, check=False):
            await say(f"No previous image {previous} to take cached steps from\n")
            return None
        await say(f"Pulled the previous image {previous} for its cached steps\n")
        return previous

    def _registry_env(self, job: Job, work: Path) -> dict[str, str]:
        """The environment of a pull or push: docker config with the job's registry token."""
        config = work / "docker-config"
        config.mkdir(mode=0o700)
        (config / "config.json").write_text(
            json.dumps({"auths": {job.registry_host: {"registrytoken": job.registry_token}}})
        )
        return {**os.environ, "DOCKER_CONFIG": str(config)}

    async def _push(self, job: Job, registry_env: dict[str, str], say: Log) -> None:
        for tag in job.docker_tags:
            reference = f"{job.registry_host}/{job.repository}:{tag}"
            await self._command(
                [*self._dockyard(), "push", reference], registry_env, say, step="push"
            )

    def _dockyard(self) -> list[str]:
        return [sys.executable, "-m", "dockyard", "--root", str(self.root / "engine")]

    async def _command(
        self,
        command: list[str],
        env: dict[str, str],
        say: Log,
        step: str,
        show: bool = True,
        check: bool = True,
    ) -> int:
        """Run a subprocess in its own process group, streaming its output into the log."""
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        output: list[str] = []
        try:
            assert process.stdout is not None
            while line := await process.stdout.readline():
                text = line.decode(errors="replace")
                output.append(text)
                if show:
                    await say(text)
            code = await process.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        if code != 0 and check:
            tail = "".join(output[-20:]).strip()
            if not show and tail:
                await say(tail + "\n")
            last = tail.splitlines()[-1] if tail else f"exit code {code}"
            raise StepFailed(step, last)
        return code

    async def _clean_containers(self) -> None:
        """Remove whatever a killed builder, or a worker that died here before, left running."""
        await asyncio.to_thread(remove_containers, self.root / "engine")
