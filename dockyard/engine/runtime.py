"""OCI runtime bundles: the config.json runc reads (runtime spec 1.0), with docker's defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.engine.fsutil import secure_join
from dockyard.oci.image import DEFAULT_PATH

DEFAULT_CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


class RuntimeConfigError(ValueError):
    """The run options cannot be turned into a runtime configuration."""


@dataclass(slots=True)
class User:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)
    home: str = "/"


def _read_db(rootfs: Path, path: str) -> list[list[str]]:
    try:
        target = secure_join(rootfs, path)
        with open(target, encoding="utf-8", errors="replace") as handle:
            text = handle.read(4 << 20)
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(rootfs: Path, spec: str) -> User:
    """`user[:group]` (names or numbers) resolved against the image's /etc/passwd and group."""
    spec = spec or "0"
    user_part, _, group_part = spec.partition(":")
    passwd = _read_db(rootfs, "/etc/passwd")
    groups = _read_db(rootfs, "/etc/group")
    uid: int | None = None
    gid: int | None = None
    home = "/"
    name = None
    for entry in passwd:
        if len(entry) < 7:
            continue
        if entry[0] == user_part or (user_part.isdigit() and entry[2] == user_part):
            uid, gid, home, name = int(entry[2]), int(entry[3]), entry[5] or "/", entry[0]
            break
    if uid is None:
        if not user_part.isdigit():
            raise RuntimeConfigError(
                f"unable to find user {user_part}: no matching entries in passwd file"
            )
        uid, gid = int(user_part), 0
    if group_part:
        gid = None
        for entry in groups:
            if len(entry) >= 3 and (
                entry[0] == group_part or (group_part.isdigit() and entry[2] == group_part)
            ):
                gid = int(entry[2])
                break
        if gid is None:
            if not group_part.isdigit():
                raise RuntimeConfigError(
                    f"unable to find group {group_part}: no matching entries in group file"
                )
            gid = int(group_part)
    extra: list[int] = []
    if name and not group_part:
        for entry in groups:
            if len(entry) >= 4 and name in entry[3].split(","):
                member_gid = int(entry[2])
                if member_gid != gid and member_gid not in extra:
                    extra.append(member_gid)
    return User(uid=uid, gid=gid if gid is not None else 0, additional_gids=extra, home=home)


def merge_env(image_env: list[str], overrides: list[str], user: User, hostname: str) -> list[str]:
    env: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        env[key] = value
    env.setdefault("PATH", DEFAULT_PATH)
    env["HOSTNAME"] = hostname
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            if key in os.environ:
                env[key] = os.environ[key]
            continue
        env[key] = value
    env.setdefault("HOME", user.home or "/")
    return [f"{k}={v}" for k, v in env.items()]


def parse_bind(spec: str) -> dict[str, Any]:
    """`-v /host:/ctr[:ro]` as a runtime-spec bind mount."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise RuntimeConfigError(f"invalid volume specification: {spec!r} (use /host:/ctr[:ro])")
    source, dest = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if not source.startswith("/"):
        raise RuntimeConfigError(
            f"invalid volume {spec!r}: named volumes are not supported, give an absolute host path"
        )
    if not dest.startswith("/"):
        raise RuntimeConfigError(f"invalid volume {spec!r}: the container path must be absolute")
    options = ["rbind", "rprivate"]
    flags = set(mode.split(","))
    if not flags <= {"ro", "rw", "z", "Z"}:
        raise RuntimeConfigError(f"invalid volume mode {mode!r} in {spec!r}")
    options.append("ro" if "ro" in flags else "rw")
    host = Path(source)
    if not host.exists():
        host.mkdir(parents=True)
    return {"destination": dest, "type": "bind", "source": source, "options": options}


def write_etc_files(directory: Path, hostname: str) -> list[dict[str, Any]]:
    """/etc/hosts, /etc/hostname and /etc/resolv.conf for the container, bind-mounted in."""
    hosts = (
        f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    )
    try:
        resolv = Path("/etc/resolv.conf").read_text()
    except OSError:
        resolv = ""
    if "nameserver" not in resolv or "nameserver 127." in resolv:
        resolv = "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    mounts = []
    for name, content in (("hosts", hosts), ("hostname", hostname + "\n"), ("resolv.conf", resolv)):
        path = directory / name
        path.write_text(content)
        mounts.append(
            {
                "destination": f"/etc/{name}",
                "type": "bind",
                "source": os.fspath(path),
                "options": ["rbind", "rprivate"],
            }
        )
    return mounts


def _nofile_limit() -> int:
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1048576 if hard == resource.RLIM_INFINITY else min(hard, 1048576)


INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")
INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf", "dev/console")


def ensure_init_layer(path: Path) -> Path:
    """The shared read-only layer holding the mount points runc needs, so that they never
    show up in a container's upper dir (and so never in a commit). Fixed modes and times."""
    if (path / ".complete").exists():
        return path / "diff"
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="init-", dir=path.parent))
    diff = work / "diff"
    diff.mkdir(mode=0o755)
    for name in INIT_DIRS:
        (diff / name).mkdir(mode=0o755)
    for name in INIT_FILES:
        (diff / name).touch(mode=0o644)
    for name in (*INIT_FILES, *reversed(INIT_DIRS)):
        os.utime(diff / name, ns=(0, 0))
    os.utime(diff, ns=(0, 0))
    (work / ".complete").touch()
    try:
        os.rename(work, path)
    except OSError:
        import shutil

        shutil.rmtree(work)
    return path / "diff"


def runtime_spec(
    *,
    rootfs: Path,
    args: list[str],
    env: list[str],
    cwd: str,
    user: User,
    hostname: str,
    network: str = "host",
    mounts: list[dict[str, Any]] | None = None,
    terminal: bool = False,
) -> dict[str, Any]:
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if network == "none":
        namespaces.append({"type": "network"})
    elif network != "host":
        raise RuntimeConfigError(f"unsupported network mode {network!r} (use host or none)")
    sys_mount = {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    }
    if network == "host":
        sys_mount = {
            "destination": "/sys",
            "type": "bind",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        }
    caps = list(DEFAULT_CAPABILITIES)
    nofile = _nofile_limit()
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                **({"additionalGids": user.additional_gids} if user.additional_gids else {}),
            },
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": False,
        },
        "root": {"path": os.fspath(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            sys_mount,
            *(mounts or []),
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }
