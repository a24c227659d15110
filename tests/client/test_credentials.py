"""config.json and the docker-credential-helper protocol (with a real helper program)."""

from __future__ import annotations

import base64
import json
import os
import stat
import textwrap
from pathlib import Path

import pytest

from dockyard.client.auth import parse_challenges
from dockyard.client.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    CredentialStore,
    normalize_host,
    server_key,
)
from dockyard.client.errors import CredentialsError

FAKE_HELPER = textwrap.dedent(
    """\
    #!{python}
    # docker-credential-test: keeps secrets in a JSON file; logs argv to show no secret is there.
    import json, os, sys
    db = os.environ["FAKE_HELPER_DB"]
    with open(db + ".argv", "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    try:
        data = json.load(open(db))
    except FileNotFoundError:
        data = {{}}
    action = sys.argv[1]
    stdin = sys.stdin.read()
    if action == "store":
        body = json.loads(stdin)
        data[body["ServerURL"]] = [body["Username"], body["Secret"]]
    elif action == "get":
        if stdin.strip() not in data:
            print("credentials not found in native keychain")
            sys.exit(1)
        user, secret = data[stdin.strip()]
        print(json.dumps({{"ServerURL": stdin.strip(), "Username": user, "Secret": secret}}))
    elif action == "erase":
        data.pop(stdin.strip(), None)
    elif action == "list":
        print(json.dumps({{k: v[0] for k, v in data.items()}}))
    json.dump(data, open(db, "w"))
    """
)


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "docker-credential-test"
    program.write_text(FAKE_HELPER.format(python=os.sys.executable))
    program.chmod(0o755)
    db = tmp_path / "helper-db.json"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HELPER_DB", str(db))
    return db


def test_keys_and_hosts() -> None:
    assert server_key("docker.io") == DOCKER_HUB_KEY
    assert server_key("index.docker.io") == DOCKER_HUB_KEY
    assert server_key("localhost:5000") == "localhost:5000"
    assert normalize_host("https://index.docker.io/v1/") == "docker.io"
    assert normalize_host("http://127.0.0.1:5000/v2/") == "127.0.0.1:5000"


def test_store_get_erase_keeps_other_keys_and_mode(tmp_path: Path) -> None:
    config = tmp_path / "cfg" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"auths": {}, "psFormat": "table {{.ID}}", "proxies": {"a": 1}}))
    store = CredentialStore(config.parent)
    store.store("127.0.0.1:5000", Credentials("alice", "pa:ss"))
    body = json.loads(config.read_text())
    assert body["psFormat"] == "table {{.ID}}" and body["proxies"] == {"a": 1}
    assert base64.b64decode(body["auths"]["127.0.0.1:5000"]["auth"]) == b"alice:pa:ss"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert store.get("127.0.0.1:5000") == Credentials("alice", "pa:ss")
    assert store.get("http://127.0.0.1:5000/v2/") == Credentials("alice", "pa:ss")
    assert "pa:ss" not in repr(store.get("127.0.0.1:5000"))
    assert store.erase("127.0.0.1:5000")
    assert store.get("127.0.0.1:5000") is None
    assert not store.erase("127.0.0.1:5000")
    assert not list(config.parent.glob(".config.json.*"))  # no temp files left behind


def test_reads_docker_written_entries(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"bob:pw").decode()},
                    "reg.example:5000": {"auth": "", "identitytoken": "refresh-123"},
                    "http://127.0.0.1:5000": {"registrytoken": "jwt-456"},
                }
            }
        )
    )
    store = CredentialStore(tmp_path)
    assert store.get("docker.io") == Credentials("bob", "pw")
    assert store.get("reg.example:5000") == Credentials(identity_token="refresh-123")
    assert store.get("other.example") is None
    token = store.get("127.0.0.1:5000")
    assert token == Credentials(registry_token="jwt-456")
    assert "jwt-456" not in repr(token) and "registry token" in repr(token)


def test_identity_token_stored_instead_of_password(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.store("reg.example", Credentials("alice", identity_token="rt-1"))
    entry = json.loads((tmp_path / "config.json").read_text())["auths"]["reg.example"]
    assert entry["identitytoken"] == "rt-1"
    assert base64.b64decode(entry["auth"]) == b"alice:"


def test_broken_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="not valid JSON"):
        CredentialStore(tmp_path).get("x")


def test_creds_store_helper_protocol(tmp_path: Path, helper: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credsStore": "test"}))
    store = CredentialStore(tmp_path)
    assert store.get("127.0.0.1:5000") is None  # "credentials not found" is not an error
    where = store.store("127.0.0.1:5000", Credentials("alice", "hunter2-secret"))
    assert where == "docker-credential-test"
    body = json.loads(config.read_text())
    assert body["auths"] == {"127.0.0.1:5000": {}}
    assert "hunter2-secret" not in config.read_text()
    assert store.get("127.0.0.1:5000") == Credentials("alice", "hunter2-secret")
    store.store("127.0.0.1:5001", Credentials("alice", identity_token="idtok"))
    assert json.loads(helper.read_text())["127.0.0.1:5001"] == ["<token>", "idtok"]
    assert store.get("127.0.0.1:5001") == Credentials(identity_token="idtok")
    assert store.hosts() == ["127.0.0.1:5000", "127.0.0.1:5001"]
    assert store.erase("127.0.0.1:5000")
    assert store.get("127.0.0.1:5000") is None
    argv_log = Path(str(helper) + ".argv").read_text()
    assert "hunter2-secret" not in argv_log and "idtok" not in argv_log


def test_cred_helpers_per_host(tmp_path: Path, helper: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "credHelpers": {"helped.example": "test"},
                "auths": {"plain.example": {"auth": base64.b64encode(b"u:p").decode()}},
            }
        )
    )
    store = CredentialStore(tmp_path)
    store.store("helped.example", Credentials("carol", "c-secret"))
    assert json.loads(helper.read_text())["helped.example"] == ["carol", "c-secret"]
    assert store.get("helped.example") == Credentials("carol", "c-secret")
    assert store.get("plain.example") == Credentials("u", "p")


def test_missing_helper_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "nonexistent-xyz"}))
    with pytest.raises(
        CredentialsError, match="docker-credential-nonexistent-xyz is not installed"
    ):
        CredentialStore(tmp_path).get("a.example")


def test_docker_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    assert CredentialStore().path == tmp_path / "dc" / "config.json"


def test_parse_challenges() -> None:
    (bearer,) = parse_challenges(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:alice/web:pull,push",error="insufficient_scope"'
    )
    assert bearer.scheme == "bearer"
    assert bearer.params["realm"] == "https://auth.example/token"
    assert bearer.scopes == ["repository:alice/web:pull,push"]
    both = parse_challenges(['Basic realm="x", Bearer realm="y",service=s', 'Newauth a="b\\"c"'])
    assert [c.scheme for c in both] == ["basic", "bearer", "newauth"]
    assert both[1].params == {"realm": "y", "service": "s"}
    assert both[2].params == {"a": 'b"c'}
