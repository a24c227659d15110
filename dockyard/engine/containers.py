"""Container records: what to run (image, command, mounts) and the state of its last run.

ROOT/containers/<hex>/container.json   the container's definition (written once)
ROOT/containers/<hex>/state.json       created | running | exited, pids, exit code, times
ROOT/containers/<hex>/upper, work      the overlayfs upper and work dirs (its changes)
ROOT/containers/<hex>/rootfs           the overlay mount point while it runs
ROOT/containers/<hex>/bundle           the OCI runtime bundle handed to runc
ROOT/containers/<hex>/container.log    JSON lines {"log", "stream", "time"}, like docker
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.engine.fsutil import read_json, remove_tree, write_json

if TYPE_CHECKING:
    from dockyard.engine.store import Store

_ADJECTIVES = [
    "admiring",
    "agitated",
    "amazing",
    "brave",
    "busy",
    "clever",
    "cool",
    "dazzling",
    "eager",
    "elastic",
    "epic",
    "fervent",
    "focused",
    "gallant",
    "happy",
    "hungry",
    "jolly",
    "keen",
    "kind",
    "loving",
    "lucid",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "zealous",
]
_NAMES = [
    "albattani",
    "babbage",
    "bohr",
    "curie",
    "darwin",
    "einstein",
    "euclid",
    "fermi",
    "galileo",
    "hopper",
    "hypatia",
    "kepler",
    "lovelace",
    "mayer",
    "meitner",
    "newton",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "wozniak",
]


@dataclass(slots=True)
class Container:
    id: str
    name: str
    image: str
    image_id: str
    created: str
    path: str
    args: list[str]
    config: dict[str, Any]
    diff_ids: list[str]
    binds: list[str] = field(default_factory=list)
    network: str = "host"
    auto_remove: bool = False
    dir: Path = Path()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def argv(self) -> list[str]:
        return [self.path, *self.args]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "image_id": self.image_id,
            "created": self.created,
            "path": self.path,
            "args": self.args,
            "config": self.config,
            "diff_ids": self.diff_ids,
            "binds": self.binds,
            "network": self.network,
            "auto_remove": self.auto_remove,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any], directory: Path) -> Container:
        return cls(
            id=value["id"],
            name=value["name"],
            image=value["image"],
            image_id=value["image_id"],
            created=value["created"],
            path=value["path"],
            args=list(value.get("args", [])),
            config=dict(value.get("config", {})),
            diff_ids=list(value.get("diff_ids", [])),
            binds=list(value.get("binds", [])),
            network=value.get("network", "host"),
            auto_remove=bool(value.get("auto_remove", False)),
            dir=directory,
        )

    # paths
    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def rootfs(self) -> Path:
        return self.dir / "rootfs"

    @property
    def bundle(self) -> Path:
        return self.dir / "bundle"

    @property
    def log_path(self) -> Path:
        return self.dir / "container.log"

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (to tell a live monitor from a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def monitor_alive(state: dict[str, Any]) -> bool:
    pid = state.get("monitor_pid")
    return bool(pid) and process_start_time(int(pid)) == state.get("monitor_start")


class Containers:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.dir = store.containers_dir

    def _load(self, directory: Path) -> Container | None:
        value = read_json(directory / "container.json")
        if value is None:
            return None
        return Container.from_json(value, directory)

    def all(self) -> list[Container]:
        found = []
        for directory in self.dir.iterdir():
            if directory.name.startswith("."):
                continue
            container = self._load(directory)
            if container is not None:
                found.append(container)
        return sorted(found, key=lambda c: c.created, reverse=True)

    def get(self, ref: str) -> Container:
        from dockyard.engine.store import NotFound, StoreError

        candidates = self.all()
        for container in candidates:
            if ref in (container.id, container.name, "/" + container.name):
                return container
        matches = [c for c in candidates if ref and c.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise StoreError(f"multiple containers match {ref!r}")
        raise NotFound(f"No such container: {ref}")

    def create(
        self,
        *,
        image: str,
        image_id: str,
        argv: list[str],
        config: dict[str, Any],
        diff_ids: list[str],
        name: str | None = None,
        binds: list[str] | None = None,
        network: str = "host",
        auto_remove: bool = False,
    ) -> Container:
        from dockyard.engine.store import Conflict
        from dockyard.oci.image import now_rfc3339

        with self.store.lock():
            taken = {c.name for c in self.all()}
            if name:
                if name in taken:
                    existing = next(c for c in self.all() if c.name == name)
                    raise Conflict(
                        f'Conflict. The container name "/{name}" is already in use by container '
                        f'"{existing.id}". You have to remove (or rename) that container to be '
                        "able to reuse that name."
                    )
            else:
                name = _random_name(taken)
            container_id = secrets.token_hex(32)
            directory = self.dir / container_id
            directory.mkdir(mode=0o700)
            for sub in ("upper", "work", "rootfs", "bundle"):
                (directory / sub).mkdir(mode=0o755)
            container = Container(
                id=container_id,
                name=name,
                image=image,
                image_id=image_id,
                created=now_rfc3339(),
                path=argv[0],
                args=argv[1:],
                config=config,
                diff_ids=diff_ids,
                binds=binds or [],
                network=network,
                auto_remove=auto_remove,
                dir=directory,
            )
            write_json(directory / "container.json", container.to_json())
            write_json(container.state_path, {"status": "created"})
        return container

    def state(self, container: Container) -> dict[str, Any]:
        """The recorded state, with a run whose monitor died reported as exited."""
        state = read_json(container.state_path, {"status": "created"}) or {"status": "created"}
        status = state.get("status")
        stale_start = status == "starting" and time.time() - state.get("requested", 0) > 30
        if (status == "running" and not monitor_alive(state)) or stale_start:
            state = {**state, "status": "exited", "exit_code": state.get("exit_code") or 255}
        return state

    def set_state(self, container: Container, **changes: Any) -> dict[str, Any]:
        state = read_json(container.state_path, {}) or {}
        state.update(changes)
        write_json(container.state_path, state)
        return state

    def remove_files(self, container: Container) -> None:
        trash = self.store.tmp / f"trash-ctr-{container.id}-{os.getpid()}"
        try:
            os.rename(container.dir, trash)
        except FileNotFoundError:
            return
        remove_tree(trash)


def container_layer_refs(store: Store) -> Iterator[str]:
    for directory in store.containers_dir.iterdir():
        value = read_json(directory / "container.json")
        if value:
            yield from value.get("diff_ids", [])


def _random_name(taken: set[str]) -> str:
    rng = random.Random(time.time_ns())
    for _ in range(100):
        name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NAMES)}"
        if name not in taken:
            return name
    return f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NAMES)}{rng.randrange(10000)}"


def create_container(
    store: Store,
    image: str,
    command: list[str],
    *,
    name: str | None = None,
    env: list[str] | None = None,
    binds: list[str] | None = None,
    workdir: str | None = None,
    user: str | None = None,
    entrypoint: str | None = None,
    network: str = "host",
    hostname: str | None = None,
    auto_remove: bool = False,
) -> Container:
    """`docker create`: the image's config with the run options over it."""
    from dockyard.engine.runtime import RuntimeConfigError, parse_bind
    from dockyard.engine.store import StoreError

    image_id = store.resolve_image(image)
    config_view = store.image_config(image_id)
    config = config_view.config
    if entrypoint is not None:
        config["Entrypoint"] = [entrypoint] if entrypoint else None
        if not command:
            config["Cmd"] = None
    if command:
        config["Cmd"] = list(command)
    argv = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not argv:
        raise StoreError("No command specified")
    merged_env = list(config.get("Env") or [])
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        merged_env = [e for e in merged_env if e.partition("=")[0] != key] + [f"{key}={value}"]
    if merged_env:
        config["Env"] = merged_env
    if workdir:
        if not workdir.startswith("/"):
            raise StoreError(
                f"the working directory '{workdir}' is invalid, it needs to be absolute"
            )
        config["WorkingDir"] = workdir
    if user is not None:
        config["User"] = user
    if hostname:
        config["Hostname"] = hostname
    if network not in ("host", "none"):
        raise StoreError(f"unsupported network mode {network!r} (use host or none)")
    try:
        for bind in binds or []:
            parse_bind(bind)
    except RuntimeConfigError as exc:
        raise StoreError(str(exc)) from exc
    config["Image"] = image
    return Containers(store).create(
        image=image,
        image_id=image_id,
        argv=argv,
        config=config,
        diff_ids=config_view.diff_ids,
        name=name,
        binds=binds,
        network=network,
        auto_remove=auto_remove,
    )
