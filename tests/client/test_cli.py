"""`dockyard login|push|pull|logout|search` end to end, against Dockyard and distribution."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from conftest import write_htpasswd

from .conftest import dockyard_cli


def _journey(
    addr: str,
    user: str,
    password: str,
    env: dict[str, str],
    tmp_path: Path,
    tarball: Path,
    *,
    identity_token: bool = False,
    anonymous_pull: bool = False,
) -> list[str]:
    """login (wrong, then right), push every tag, pull, pull -a, run, logout; returns outputs."""
    config = Path(env["DOCKER_CONFIG"]) / "config.json"
    name = f"{addr}/{user}/bb"
    outputs: list[str] = []

    def cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        result = dockyard_cli(*args, **kwargs)
        outputs.append(result.stdout + result.stderr)
        return result

    cli("import", str(tarball), f"{name}:v1", env=env)
    cli("tag", f"{name}:v1", f"{name}:v2", env=env)

    # not logged in: a clear error
    denied = cli("push", f"{name}:v1", env=env, check=False)
    assert denied.returncode == 1 and "Error:" in denied.stderr
    assert "authentication required" in denied.stderr and "Traceback" not in denied.stderr

    # wrong password: a clear error, nothing stored
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('{"auths": {}, "detachKeys": "ctrl-e"}')
    before = config.read_bytes()
    wrong = cli(
        "login",
        "-u",
        user,
        "--password-stdin",
        addr,
        env=env,
        input="not-the-password\n",
        check=False,
    )
    assert wrong.returncode == 1
    assert "incorrect username or password" in wrong.stderr
    assert "not-the-password" not in wrong.stderr + wrong.stdout
    assert config.read_bytes() == before

    ok = cli("login", "-u", user, "--password-stdin", addr, env=env, input=password + "\n")
    assert "Login Succeeded" in ok.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    stored = json.loads(config.read_text())
    assert stored["detachKeys"] == "ctrl-e"
    entry = stored["auths"][addr]
    assert password not in config.read_text()
    if identity_token:
        assert entry["identitytoken"]
        assert password not in base64.b64decode(entry.get("auth", "")).decode()
    else:
        assert base64.b64decode(entry["auth"]).decode() == f"{user}:{password}"

    pushed = cli("push", name, env=env)  # every tag
    assert "v1: digest: sha256:" in pushed.stdout and "v2: digest: sha256:" in pushed.stdout
    assert "Pushed" in pushed.stdout
    again = cli("push", f"{name}:v1", env=env)
    assert "Layer already exists" in again.stdout and "Pushed" not in again.stdout
    cli("tag", f"{name}:v1", f"{addr}/{user}/copy:v1", env=env)
    mounted = cli("push", f"{addr}/{user}/copy:v1", env=env)
    assert f"Mounted from {user}/bb" in mounted.stdout and "Pushed" not in mounted.stdout

    other = dict(env, DOCKYARD_ROOT=str(tmp_path / "store2"))
    pulled = cli("pull", f"{name}:v1", env=other)
    assert "Pull complete" in pulled.stdout
    assert "Status: Downloaded newer image for" in pulled.stdout
    images = cli("images", env=other).stdout
    assert f"{name}" in images and "v1" in images
    second = cli("pull", f"{name}:v1", env=other)
    assert "Image is up to date" in second.stdout
    every = cli("pull", "-a", name, env=other)
    assert "v2" in every.stdout
    assert {line.split()[1] for line in cli("images", env=other).stdout.splitlines()[1:]} == {
        "v1",
        "v2",
    }
    if os.geteuid() == 0 and shutil.which("runc"):
        ran = cli("run", "--rm", f"{name}:v1", "/bin/busybox", "cat", "/etc/hello", env=other)
        assert "hello from the pushed image" in ran.stdout

    out = cli("logout", addr, env=env)
    assert f"Removing login credentials for {addr}" in out.stdout
    assert addr not in json.loads(config.read_text())["auths"]
    assert "Not logged in" in cli("logout", addr, env=env).stdout
    third = dict(env, DOCKYARD_ROOT=str(tmp_path / "store3"))
    anonymous = cli("pull", f"{name}:v1", env=third, check=False)
    if anonymous_pull:
        assert anonymous.returncode == 0, anonymous.stderr
    else:
        assert anonymous.returncode == 1 and "authentication required" in anonymous.stderr
    refused = cli("push", f"{name}:v2", env=env, check=False)
    assert refused.returncode == 1 and "authentication required" in refused.stderr
    for text in outputs:
        assert password not in text and "Traceback" not in text
    return outputs


def test_journey_against_dockyard_htpasswd(
    dockyard_server, cli_env, tmp_path: Path, rootfs_tarball
):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "al1ce-pw"})
    server = dockyard_server("--auth", "htpasswd", "--htpasswd", str(htpasswd))
    _journey(server.addr, "alice", "al1ce-pw", cli_env, tmp_path, rootfs_tarball)
    assert "al1ce-pw" not in server.log_path.read_text()


def test_journey_against_the_hub(hub, cli_env, tmp_path: Path, rootfs_tarball):
    server = hub({"alice": "al1ce-hub-pw"})
    _journey(
        server.addr,
        "alice",
        "al1ce-hub-pw",
        cli_env,
        tmp_path,
        rootfs_tarball,
        identity_token=True,
        anonymous_pull=True,  # the hub's repositories are public by default
    )
    assert "al1ce-hub-pw" not in server.log_path.read_text()
    found = dockyard_cli("search", f"{server.addr}/bb", env=cli_env).stdout.splitlines()
    assert found[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert [line.split()[0] for line in found[1:]] == ["alice/bb"]


def test_journey_against_distribution_htpasswd(
    distribution, cli_env, tmp_path: Path, rootfs_tarball
):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"bob": "b0b-pw"})
    server = distribution(htpasswd=htpasswd)
    _journey(server.addr, "bob", "b0b-pw", cli_env, tmp_path, rootfs_tarball)
    assert "b0b-pw" not in server.log_path.read_text()


def test_journey_against_distribution_with_hub_tokens(
    hub, distribution, cli_env, tmp_path: Path, rootfs_tarball
):
    """distribution trusts the hub's signing certificate and sends clients to its /token."""
    token_hub = hub({"dora": "d0ra-hub-pw"})
    server = distribution(hub=token_hub)
    _journey(
        server.addr,
        "dora",
        "d0ra-hub-pw",
        cli_env,
        tmp_path,
        rootfs_tarball,
        identity_token=True,
        anonymous_pull=False,  # the hub has no such repository to call public
    )
    assert "d0ra-hub-pw" not in server.log_path.read_text() + token_hub.log_path.read_text()


def test_login_stores_identity_token(
    distribution, token_server, cli_env, tmp_path: Path, rootfs_tarball
):
    server = distribution(token=token_server)
    dockyard_cli(
        "login", "-u", "alice", "--password-stdin", server.addr, env=cli_env, input="tok3n-pass\n"
    )
    entry = json.loads((Path(cli_env["DOCKER_CONFIG"]) / "config.json").read_text())["auths"][
        server.addr
    ]
    assert entry["identitytoken"] in token_server.refresh_tokens
    assert "tok3n-pass" not in json.dumps(entry)
    import base64

    assert "tok3n-pass" not in base64.b64decode(entry.get("auth", "")).decode()
    name = f"{server.addr}/alice/tokimg:v1"
    dockyard_cli("import", str(rootfs_tarball), name, env=cli_env)
    dockyard_cli("push", name, env=cli_env)
    other = dict(cli_env, DOCKYARD_ROOT=str(tmp_path / "store2"))
    dockyard_cli("pull", name, env=other)
    assert {r.get("grant_type") for r in token_server.requests if r["method"] == "POST"} == {
        "password",
        "refresh_token",
    }


def test_login_with_credential_helper(dockyard_server, cli_env, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-test"
    store = tmp_path / "helper-store.json"
    seen = tmp_path / "helper-argv-env.txt"  # what a process listing would show
    helper.write_text(
        f"#!{os.sys.executable}\n"
        "import json, os, sys\n"
        f"db = {str(store)!r}\n"
        "try: data = json.load(open(db))\nexcept FileNotFoundError: data = {}\n"
        "a = sys.argv[1]; s = sys.stdin.read()\n"
        f"open({str(seen)!r}, 'a').write(repr(sys.argv) + repr(dict(os.environ)))\n"
        "if a == 'store':\n b = json.loads(s); data[b['ServerURL']] = b\n"
        "elif a == 'get':\n"
        " if s.strip() not in data:\n"
        "  print('credentials not found in native keychain'); sys.exit(1)\n"
        " print(json.dumps(data[s.strip()]))\n"
        "elif a == 'erase': data.pop(s.strip(), None)\n"
        "json.dump(data, open(db, 'w'))\n"
    )
    helper.chmod(0o755)
    env = dict(cli_env, PATH=f"{bin_dir}{os.pathsep}{cli_env['PATH']}")
    config = Path(env["DOCKER_CONFIG"]) / "config.json"
    config.parent.mkdir(parents=True)
    config.write_text('{"credsStore": "test"}')
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"carol": "car0l-pw"})
    server = dockyard_server("--auth", "htpasswd", "--htpasswd", str(htpasswd))
    out = dockyard_cli(
        "login", "-u", "carol", "--password-stdin", server.addr, env=env, input="car0l-pw\n"
    )
    assert "Login Succeeded" in out.stdout and "unencrypted" not in out.stderr
    assert "car0l-pw" not in config.read_text()
    assert json.loads(store.read_text())[server.addr]["Secret"] == "car0l-pw"
    # a second login without flags reuses the stored credentials
    again = dockyard_cli("login", server.addr, env=env)
    assert "existing credentials" in again.stdout
    dockyard_cli("logout", server.addr, env=env)
    assert server.addr not in json.loads(store.read_text())
    assert "'store'" in seen.read_text() and "car0l-pw" not in seen.read_text()


def test_search_against_the_hub(hub, cli_env, tmp_path: Path, rootfs_tarball):
    server = hub({"boss": "b0ss-hub-pw", "alice": "al1ce-hub-pw"}, admins={"boss"})
    for user, password, repository in (
        ("boss", "b0ss-hub-pw", "library/ubuntu"),
        ("alice", "al1ce-hub-pw", "alice/ubuntu-dev"),
        ("alice", "al1ce-hub-pw", "alice/other"),
    ):
        name = f"{server.addr}/{repository}:v1"
        dockyard_cli("import", str(rootfs_tarball), name, env=cli_env)
        dockyard_cli(
            "login", "-u", user, "--password-stdin", server.addr, env=cli_env, input=password
        )
        dockyard_cli("push", name, env=cli_env)
    rows = dockyard_cli("search", f"{server.addr}/ubuntu", env=cli_env).stdout.splitlines()
    assert rows[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    by_name = {row.split()[0]: row.split()[1:] for row in rows[1:]}
    assert set(by_name) == {"ubuntu", "alice/ubuntu-dev"}
    assert by_name["ubuntu"] == ["0", "[OK]"] and by_name["alice/ubuntu-dev"] == ["0"]
    one = dockyard_cli("search", "--limit", "1", f"{server.addr}/ubuntu", env=cli_env).stdout
    assert len(one.splitlines()) == 2
    default = dict(cli_env, DOCKYARD_DEFAULT_REGISTRY=server.addr)
    assert "alice/other" in dockyard_cli("search", "other", env=default).stdout


def test_search_table_format():
    from dockyard.cli.distribution import search_table
    from dockyard.client.registry import SearchResult

    long = "Ubuntu is a Debian-based Linux operating system based on free software."
    results = [
        SearchResult("ubuntu", long, 9000, official=True, automated=False),
        SearchResult("alice/ubuntu-dev", "dev\ntools", 3, official=False, automated=True),
    ]
    lines = search_table(results, no_trunc=False)
    assert lines[0].split() == ["NAME", "DESCRIPTION", "STARS", "OFFICIAL", "AUTOMATED"]
    assert lines[1].startswith("ubuntu ") and lines[1].split()[-2:] == ["9000", "[OK]"]
    assert long[:44] + "…" in lines[1] and long not in lines[1]
    assert lines[2].startswith("alice/ubuntu-dev") and lines[2].endswith("[OK]")
    assert "dev tools" in lines[2]
    assert long in search_table(results, no_trunc=True)[1]
    # the columns line up
    assert lines[0].index("STARS") == lines[1].index("9000") == lines[2].index("3  ")


def test_registry_token_as_build_workers_write_it(
    hub, distribution, cli_env, tmp_path: Path, rootfs_tarball
):
    """`{"auths": {host: {"registrytoken": JWT}}}` is sent as the bearer token, no login."""
    from dockyard.hub.signing import TokenSigner

    server = hub({"erin": "er1n-hub-pw"})
    mirror = distribution(hub=server)
    signer = TokenSigner(server.data_dir / "hub", "dockyard")
    token = signer.issue(
        "erin", [{"type": "repository", "name": "erin/built", "actions": ["pull", "push"]}]
    )
    config = Path(cli_env["DOCKER_CONFIG"])
    config.mkdir(mode=0o700)
    (config / "config.json").write_text(
        json.dumps({"auths": {h: {"registrytoken": token} for h in (server.addr, mirror.addr)}})
    )
    for addr in (server.addr, mirror.addr):
        name = f"{addr}/erin/built:v1"
        dockyard_cli("import", str(rootfs_tarball), name, env=cli_env)
        assert "v1: digest: sha256:" in dockyard_cli("push", name, env=cli_env).stdout
        other = dict(cli_env, DOCKYARD_ROOT=str(tmp_path / f"pulled-{addr}"))
        assert "Pull complete" in dockyard_cli("pull", name, env=other).stdout
        outside = f"{addr}/erin/elsewhere:v1"
        dockyard_cli("tag", name, outside, env=cli_env)
        refused = dockyard_cli("push", outside, env=cli_env, check=False)
        assert refused.returncode == 1
        assert "registry token from config.json was refused" in refused.stderr
        assert token not in refused.stderr and "Traceback" not in refused.stderr


def test_help_is_fast_and_lists_commands(cli_env):
    out = subprocess.run(
        [os.sys.executable, "-X", "importtime", "-m", "dockyard", "--help"],
        capture_output=True,
        text=True,
        env=cli_env,
        check=True,
    )
    for command in ("login", "logout", "push", "pull", "search"):
        assert f"  {command} " in out.stdout
    imported = out.stderr
    for heavy in ("httpx", "rich", "dockyard.client", "dockyard.engine"):
        assert f"| {heavy}\n" not in imported and f"|   {heavy}\n" not in imported, heavy


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run `dockyard ARGS` with stdout on a pseudo-terminal; returns what it drew."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [os.sys.executable, "-m", "dockyard", *args],
        env=dict(env, TERM="xterm-256color", COLUMNS="120"),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    drawn = b""
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        drawn += data
    os.close(leader)
    assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    return drawn.decode(errors="replace")


def test_progress_bars_on_a_terminal_plain_lines_otherwise(registry, cli_env, rootfs_tarball):
    name = f"{registry.addr}/client/progress:v1"
    dockyard_cli("import", str(rootfs_tarball), name, env=cli_env)
    plain = dockyard_cli("push", name, env=cli_env).stdout
    assert "\x1b[" not in plain and "━" not in plain
    pushed = re.findall(r"^([0-9a-f]{12}): Pushed$", plain, re.MULTILINE)
    assert len(pushed) == 2, plain  # the layer and the config
    store = dict(cli_env, DOCKYARD_ROOT=cli_env["DOCKYARD_ROOT"] + "-tty")
    drawn = _on_a_terminal(["pull", name], store)
    assert "━" in drawn and "\x1b[" in drawn  # rich bars, redrawn in place
    assert any(f"{key}: " in drawn for key in pushed) and "Pull complete" in drawn


async def test_pull_platform_from_an_index(registry, cli_env, tmp_path: Path):
    from imagegen import make_multiarch

    from dockyard.client.registry import RegistryClient
    from dockyard.client.transfer import push_image

    from .conftest import DirSource

    index = make_multiarch([4000], seed=31)
    source = DirSource(tmp_path / "src")
    source.add_index(index)
    amd64 = index.images[0].manifest
    async with RegistryClient(registry.addr) as client:
        await push_image(
            client, "client/platforms", "v1", index.manifest.data, index.manifest.media_type, source
        )
        await push_image(client, "client/platforms", "amd64", amd64.data, amd64.media_type, source)
    name = f"{registry.addr}/client/platforms:v1"
    out = dockyard_cli("pull", "--platform", "linux/arm64", name, env=cli_env).stdout
    assert f"Digest: {index.manifest.digest}" in out  # the index's digest, as docker shows it
    inspected = json.loads(dockyard_cli("inspect", name, env=cli_env).stdout)[0]
    assert inspected["Architecture"] == "arm64"
    assert inspected["Id"] == index.images[1].config.digest
    bad = dockyard_cli("pull", "--platform", "linux/s390x", name, env=cli_env, check=False)
    assert bad.returncode == 1 and "no manifest for platform linux/s390x" in bad.stderr
    assert "Traceback" not in bad.stderr
    odd = dockyard_cli("pull", "--platform", "arm64", name, env=cli_env, check=False)
    assert odd.returncode == 1 and "invalid platform" in odd.stderr
    single = f"{registry.addr}/client/platforms:amd64"
    other = dockyard_cli("pull", "--platform", "linux/arm64", single, env=cli_env, check=False)
    assert other.returncode == 1
    assert "is for linux/amd64, which does not match platform linux/arm64" in other.stderr
    dockyard_cli("pull", "--platform", "linux/amd64", single, env=cli_env)
