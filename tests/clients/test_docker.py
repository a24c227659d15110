"""The Docker engine against Dockyard: push, pull and run a busybox image; docker login."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
from conftest import DockyardServer, DockyardServerFactory, assert_store_consistent, write_htpasswd
from imagegen import OCILayout, make_multiarch

from .conftest import DockerCLI, Skopeo

pytestmark = pytest.mark.slow

BUSYBOX = Path("/bin/busybox")
APPLETS = ["sh", "echo", "cat", "ls", "sha256sum", "true"]
DOCKER_ACCEPT = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


@pytest.fixture(scope="module")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root filesystem tarball: Debian's static /bin/busybox plus applet symlinks."""
    binary = Path(shutil.which("busybox") or BUSYBOX).resolve()
    if not binary.exists():
        pytest.fail("busybox is not installed; run scripts/install-test-deps.sh", pytrace=False)
    if b"ld-linux" in binary.read_bytes()[: 4096 * 4]:
        pytest.fail(f"{binary} is dynamically linked; install busybox-static", pytrace=False)
    root = tmp_path_factory.mktemp("busybox-rootfs")
    (root / "bin").mkdir()
    (root / "tmp").mkdir(mode=0o1777)
    shutil.copy2(binary, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    tarball = root.parent / "busybox-rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        for entry in sorted(root.rglob("*")):
            tar.add(entry, arcname=str(entry.relative_to(root)), recursive=False)
    return tarball


def busybox_sha256() -> str:
    binary = Path(shutil.which("busybox") or BUSYBOX).resolve()
    return hashlib.sha256(binary.read_bytes()).hexdigest()


def pushed_digest(output: str) -> str:
    match = re.search(r"digest: (sha256:[0-9a-f]{64}) size: \d+", output)
    assert match, f"no digest in docker push output:\n{output}"
    return match[1]


def verify_image_in_registry(
    server: DockyardServer, repo: str, reference: str, auth: tuple[str, str] | None = None
) -> str:
    """Fetch the manifest and every blob it names from Dockyard and re-hash each one."""
    with httpx.Client(base_url=server.url, auth=auth, timeout=60) as http:
        response = http.get(f"/v2/{repo}/manifests/{reference}", headers={"accept": DOCKER_ACCEPT})
        assert response.status_code == 200, response.text
        digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        assert response.headers["docker-content-digest"] == digest
        manifest = json.loads(response.content)
        for descriptor in [manifest["config"], *manifest["layers"]]:
            blob = http.get(f"/v2/{repo}/blobs/{descriptor['digest']}")
            assert blob.status_code == 200
            assert len(blob.content) == descriptor["size"]
            assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == descriptor["digest"]
    return digest


def test_push_pull_run(registry: DockyardServer, docker: DockerCLI, busybox_rootfs: Path):
    ref = f"{registry.addr}/tools/busybox:1"
    docker("import", str(busybox_rootfs), ref)
    pushed = docker("push", ref).stdout
    digest = pushed_digest(pushed)
    assert verify_image_in_registry(registry, "tools/busybox", "1") == digest

    docker("rmi", ref)
    assert docker("image", "inspect", ref, check=False).returncode != 0
    pulled = docker("pull", ref).stdout
    assert f"Digest: {digest}" in pulled
    assert "Downloaded newer image" in pulled
    repo_digests = json.loads(docker("image", "inspect", ref).stdout)[0]["RepoDigests"]
    assert f"{registry.addr}/tools/busybox@{digest}" in repo_digests

    run = docker("run", "--rm", "--network", "none", ref, "/bin/busybox", "echo", "hello")
    assert run.stdout == "hello\n"
    # The pulled layer really is the binary we packed.
    run = docker("run", "--rm", "--network", "none", ref, "sha256sum", "/bin/busybox")
    assert run.stdout.split()[0] == busybox_sha256()
    # Pulling again by digest finds the same image.
    assert docker("pull", f"{registry.addr}/tools/busybox@{digest}").returncode == 0

    # A second repository: docker mounts the layer across instead of uploading it.
    other = f"{registry.addr}/tools/other:2"
    docker("tag", ref, other)
    pushed = docker("push", other).stdout
    assert pushed_digest(pushed) == digest
    assert "Mounted from tools/busybox" in pushed or "Layer already exists" in pushed, pushed
    verify_image_in_registry(registry, "tools/other", "2")
    assert_store_consistent(registry.data_dir)


def test_login_push_pull(
    dockyard_server: DockyardServerFactory,
    docker: DockerCLI,
    busybox_rootfs: Path,
    tmp_path: Path,
):
    users = write_htpasswd(tmp_path / "htpasswd", {"alice": "correct horse", "bob": "hunter2"})
    server = dockyard_server("--auth", "htpasswd", "--htpasswd", str(users))
    ref = f"{server.addr}/team/busybox:stable"
    docker("import", str(busybox_rootfs), ref)

    # Not logged in: push is refused.
    refused = docker("push", ref, check=False)
    assert refused.returncode != 0
    assert re.search(
        r"no basic auth credentials|unauthorized|authentication required",
        refused.stderr + refused.stdout,
    ), refused

    # Wrong passwords, unknown user: non-zero exit and a clear message.
    for user, password in [("alice", "wrong"), ("mallory", "correct horse")]:
        login = docker(
            "login",
            "--username",
            user,
            "--password-stdin",
            server.addr,
            input=password,
            check=False,
        )
        assert login.returncode != 0, login
        assert "401 Unauthorized" in login.stderr, login.stderr
        assert "Login Succeeded" not in login.stdout
    config = json.loads((docker.config_dir / "config.json").read_text())
    assert server.addr not in config.get("auths", {})

    login = docker(
        "login", "--username", "alice", "--password-stdin", server.addr, input="correct horse"
    )
    assert "Login Succeeded" in login.stdout
    config = json.loads((docker.config_dir / "config.json").read_text())
    assert server.addr in config["auths"]

    digest = pushed_digest(docker("push", ref).stdout)
    assert verify_image_in_registry(server, "team/busybox", "stable", ("bob", "hunter2")) == digest
    docker("rmi", ref)
    assert f"Digest: {digest}" in docker("pull", ref).stdout
    run = docker("run", "--rm", "--network", "none", ref, "/bin/busybox", "echo", "hello")
    assert run.stdout == "hello\n"

    # Logged out, the image cannot be pulled again.
    docker("logout", server.addr)
    docker("rmi", ref)
    denied = docker("pull", ref, check=False)
    assert denied.returncode != 0
    assert re.search(
        r"unauthorized|authentication required|no basic auth", denied.stderr.lower()
    ), denied.stderr

    assert "Traceback" not in server.log_text(), server.log_tail()
    assert_store_consistent(server.data_dir)


def test_pull_multi_arch_index_pushed_by_skopeo(
    registry: DockyardServer, docker: DockerCLI, skopeo: Skopeo, tmp_path: Path
):
    """An OCI index pushed by skopeo; docker pulls it, picks linux/amd64 and unpacks it."""
    index = make_multiarch([96 * 1024, 5000], seed=71)
    OCILayout(tmp_path / "src").add_index(index, "multi")
    ref = f"{registry.addr}/mixed/multi:1"
    skopeo.copy(f"oci:{tmp_path / 'src'}:multi", f"docker://{ref}", "--all")

    pulled = docker("pull", ref).stdout
    assert f"Digest: {index.manifest.digest}" in pulled
    info = json.loads(docker("image", "inspect", ref).stdout)[0]
    amd64 = next(image for image in index.images if image.arch == "amd64")
    assert info["Architecture"] == "amd64"
    assert info["Id"] == amd64.config.digest
    assert info["RootFS"]["Layers"] == [layer.diff_id for layer in amd64.layers]
    assert f"{registry.addr}/mixed/multi@{index.manifest.digest}" in info["RepoDigests"]

    # Files unpacked from the layers are the ones imagegen packed.
    container = docker("create", ref, "/none").stdout.strip()
    try:
        for layer in amd64.layers:
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as packed:
                member = next(m for m in packed.getmembers() if m.isfile())
                expected = packed.extractfile(member).read()
            copied = subprocess.run(
                [docker.engine.cli, "cp", f"{container}:/{member.name}", "-"],
                env=docker.env,
                capture_output=True,
                check=True,
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(copied)) as out:
                got = out.extractfile(out.getmembers()[0]).read()
            assert got == expected, member.name
    finally:
        docker("rm", container)
    assert_store_consistent(registry.data_dir)
