"""Registry credentials kept the way docker keeps them, so one login serves both tools.

    $DOCKER_CONFIG/config.json (default ~/.docker/config.json)
    {
      "auths": {"HOST": {"auth": base64("user:password")} | {"identitytoken": "…"}
                        | {"registrytoken": "…"} | {}},
      "credsStore": "pass",                  # docker-credential-pass for every host …
      "credHelpers": {"HOST": "ecr-login"}   # … except these
    }

An `identitytoken` is an OAuth2 refresh token (exchanged for registry tokens at the realm); a
`registrytoken` is a registry bearer token itself, sent as is (what build workers are given).
A credential helper is a program `docker-credential-NAME` taking one of `get`, `store`, `erase`,
`list` as its argument and talking JSON over stdin/stdout; secrets travel only through its
stdin/stdout, never in its argv or environment. The file is rewritten atomically with mode
0600, keeping every key Dockyard does not know about.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.client.errors import CredentialsError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
TOKEN_USERNAME = "<token>"  # what helpers store as Username when Secret is an identity token
HELPER_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:  # never print a secret, even by accident
        secret = (
            "registry token"
            if self.registry_token
            else "identity token"
            if self.identity_token
            else "password"
            if self.password
            else ""
        )
        return f"Credentials(username={self.username!r}{', ' + secret if secret else ''})"


def config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    if env:
        return Path(env)
    return Path(os.path.expanduser("~")) / ".docker"


def server_key(host: str) -> str:
    """The `auths` key docker uses for a registry host (Docker Hub has a historic URL)."""
    bare = normalize_host(host)
    return DOCKER_HUB_KEY if bare in DOCKER_HUB_HOSTS else bare


def normalize_host(key: str) -> str:
    """`https://host:5000/v2/` → `host:5000`: the host part of any form docker writes."""
    text = key.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    text = text.split("/", 1)[0]
    return "docker.io" if text in DOCKER_HUB_HOSTS else text


class CredentialHelper:
    """One `docker-credential-NAME` program."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.program = f"docker-credential-{name}"

    def _run(self, action: str, payload: str) -> str:
        try:
            result = subprocess.run(
                [self.program, action],
                input=payload,
                capture_output=True,
                text=True,
                timeout=HELPER_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            raise CredentialsError(
                f"credential helper {self.program} is not installed (not found on PATH)"
            ) from None
        except subprocess.TimeoutExpired:
            raise CredentialsError(f"credential helper {self.program} {action} timed out") from None
        if result.returncode != 0:
            message = (result.stdout.strip() or result.stderr.strip())[:300]
            if action == "get" and "credentials not found" in message.lower():
                raise LookupError(message)
            raise CredentialsError(f"credential helper {self.program} {action} failed: {message}")
        return result.stdout

    def get(self, server: str) -> Credentials | None:
        try:
            out = self._run("get", server)
        except LookupError:
            return None
        try:
            body = json.loads(out)
        except json.JSONDecodeError:
            raise CredentialsError(f"credential helper {self.program} get: not JSON") from None
        username = body.get("Username") or ""
        secret = body.get("Secret") or ""
        if not (username or secret):
            return None
        if username == TOKEN_USERNAME:
            return Credentials(identity_token=secret)
        return Credentials(username=username, password=secret)

    def store(self, server: str, creds: Credentials) -> None:
        if creds.identity_token:
            body = {"ServerURL": server, "Username": TOKEN_USERNAME, "Secret": creds.identity_token}
        else:
            body = {"ServerURL": server, "Username": creds.username, "Secret": creds.password}
        self._run("store", json.dumps(body))

    def erase(self, server: str) -> None:
        self._run("erase", server)

    def list(self) -> dict[str, str]:
        out = self._run("list", "")
        try:
            body = json.loads(out or "{}")
        except json.JSONDecodeError:
            raise CredentialsError(f"credential helper {self.program} list: not JSON") from None
        return dict(body) if isinstance(body, dict) else {}


class CredentialStore:
    """Read and write credentials in a docker `config.json` (and its helpers)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else config_dir()
        self.path = self.directory / "config.json"

    # --- the file -------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CredentialsError(f"cannot read {self.path}: {exc.strerror}") from None
        if not text.strip():
            return {}
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"{self.path} is not valid JSON: {exc.msg}") from None
        if not isinstance(body, dict):
            raise CredentialsError(f"{self.path} is not a JSON object")
        return body

    def save(self, body: dict[str, Any]) -> None:
        """Write atomically (temp file + rename) with mode 0600, following a symlinked file."""
        target = self.path.resolve() if self.path.is_symlink() else self.path
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=target.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(body, handle, indent="\t")
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # --- lookups --------------------------------------------------------------------------

    def helper_for(self, host: str, body: dict[str, Any] | None = None) -> CredentialHelper | None:
        body = self.load() if body is None else body
        bare = normalize_host(host)
        for key, name in (body.get("credHelpers") or {}).items():
            if normalize_host(key) == bare and name:
                return CredentialHelper(name)
        store = body.get("credsStore")
        return CredentialHelper(store) if store else None

    def _auth_entry(self, body: dict[str, Any], host: str) -> tuple[str, dict[str, Any]] | None:
        auths = body.get("auths") or {}
        key = server_key(host)
        if key in auths:
            return key, auths[key]
        bare = normalize_host(host)
        for other, entry in auths.items():
            if normalize_host(other) == bare:
                return other, entry
        return None

    def get(self, host: str) -> Credentials | None:
        body = self.load()
        helper = self.helper_for(host, body)
        if helper is not None:
            return helper.get(server_key(host))
        found = self._auth_entry(body, host)
        if found is None:
            return None
        entry = found[1] or {}
        token = entry.get("identitytoken") or ""
        username, password = entry.get("username") or "", entry.get("password") or ""
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(entry["auth"]).decode()
            except (ValueError, UnicodeDecodeError):
                raise CredentialsError(f"invalid auth entry for {host} in {self.path}") from None
            username, sep, password = decoded.partition(":")
            if not sep:
                raise CredentialsError(f"invalid auth entry for {host} in {self.path}")
        creds = Credentials(username, password, token, entry.get("registrytoken") or "")
        return None if creds.empty else creds

    def hosts(self) -> list[str]:
        body = self.load()
        hosts = {normalize_host(k) for k in (body.get("auths") or {})}
        store = body.get("credsStore")
        if store:
            with contextlib.suppress(CredentialsError):
                hosts.update(normalize_host(k) for k in CredentialHelper(store).list())
        return sorted(hosts)

    # --- changes --------------------------------------------------------------------------

    def store(self, host: str, creds: Credentials) -> str:
        """Save credentials for `host`; returns where they went (a helper or the file)."""
        body = self.load()
        key = server_key(host)
        helper = self.helper_for(host, body)
        auths = body.setdefault("auths", {})
        for other in [k for k in auths if normalize_host(k) == normalize_host(host)]:
            del auths[other]
        if helper is not None:
            helper.store(key, creds)
            auths[key] = {}
            self.save(body)
            return helper.program
        entry: dict[str, str] = {}
        if creds.identity_token:
            if creds.username:
                entry["auth"] = base64.b64encode(f"{creds.username}:".encode()).decode()
            entry["identitytoken"] = creds.identity_token
        else:
            entry["auth"] = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        auths[key] = entry
        self.save(body)
        return str(self.path)

    def erase(self, host: str) -> bool:
        """Forget credentials for `host`; True when there were some."""
        body = self.load()
        helper = self.helper_for(host, body)
        found = False
        if helper is not None:
            key = server_key(host)
            if helper.get(key) is not None:
                helper.erase(key)
                found = True
        auths = body.get("auths") or {}
        doomed = [k for k in auths if normalize_host(k) == normalize_host(host)]
        for key in doomed:
            del auths[key]
        if doomed:
            self.save(body)
        return found or bool(doomed)
