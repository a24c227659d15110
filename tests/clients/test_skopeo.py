"""skopeo against Dockyard: OCI layouts pushed, pulled back, and compared byte for byte."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import DockyardServer, DockyardServerFactory, assert_store_consistent, write_htpasswd
from imagegen import (
    MT_INDEX,
    MT_MANIFEST,
    OCILayout,
    layout_blob,
    make_image,
    make_multiarch,
    reachable,
    read_layout,
    verify_layout,
)

from .conftest import Skopeo

KIB = 1024
MIB = 1024 * KIB


def assert_layouts_match(source: Path, copy: Path, tag: str, copy_tag: str | None = None) -> None:
    """The copy holds the same manifest digest for the tag, and every blob it reaches,
    byte for byte; every blob file of the copy hashes to its name."""
    original = read_layout(source)[tag]
    copied = read_layout(copy)[copy_tag or tag]
    assert copied["digest"] == original["digest"]
    assert copied["mediaType"] == original["mediaType"]
    assert copied["size"] == original["size"]
    hashes = verify_layout(copy)
    wanted = reachable(source, str(original["digest"]))
    assert reachable(copy, str(copied["digest"])) == wanted
    for digest in wanted:
        assert digest in hashes, f"{digest} missing from the copy"
        assert layout_blob(copy, digest) == layout_blob(source, digest), digest


def registry_manifest(server: DockyardServer, repo: str, ref: str, **kwargs) -> httpx.Response:
    accept = ", ".join([MT_MANIFEST, MT_INDEX])
    return httpx.get(
        f"{server.url}/v2/{repo}/manifests/{ref}", headers={"accept": accept}, **kwargs
    )


def test_single_layer_round_trip(registry: DockyardServer, skopeo: Skopeo, tmp_path: Path):
    image = make_image([300 * KIB], seed=1)
    OCILayout(tmp_path / "src").add_image(image, "v1")
    ref = f"docker://{registry.addr}/skopeo/single:v1"

    skopeo.copy(f"oci:{tmp_path / 'src'}:v1", ref)
    skopeo.copy(ref, f"oci:{tmp_path / 'back'}:v1")

    assert_layouts_match(tmp_path / "src", tmp_path / "back", "v1")
    response = registry_manifest(registry, "skopeo/single", "v1")
    assert response.status_code == 200
    assert response.content == image.manifest.data
    assert response.headers["docker-content-digest"] == image.manifest.digest
    assert response.headers["content-type"] == MT_MANIFEST
    stored = assert_store_consistent(registry.data_dir)
    for blob in (*image.blobs, image.manifest):
        assert stored[blob.digest] == blob.size


@pytest.mark.slow
def test_thirty_layer_round_trip(registry: DockyardServer, skopeo: Skopeo, tmp_path: Path):
    sizes = [0, 1, 512, *(KIB * (n * 37 % 200 + 1) for n in range(26)), 8 * MIB]
    assert len(sizes) == 30
    image = make_image(sizes, seed=30)
    assert len({layer.digest for layer in image.layers}) == 30
    OCILayout(tmp_path / "src").add_image(image, "thirty")
    ref = f"docker://{registry.addr}/skopeo/thirty:thirty"

    skopeo.copy(f"oci:{tmp_path / 'src'}:thirty", ref)
    skopeo.copy(ref, f"oci:{tmp_path / 'back'}:thirty")

    assert_layouts_match(tmp_path / "src", tmp_path / "back", "thirty")
    stored = assert_store_consistent(registry.data_dir)
    for layer in image.layers:
        assert stored[layer.digest] == layer.size
        # and each layer is served intact by the registry itself
    big = image.layers[-1]
    response = httpx.get(f"{registry.url}/v2/skopeo/thirty/blobs/{big.digest}", timeout=30)
    assert response.status_code == 200
    assert response.content == big.data


def test_multi_arch_index_round_trip(registry: DockyardServer, skopeo: Skopeo, tmp_path: Path):
    index = make_multiarch([64 * KIB, 200 * KIB], seed=7)
    OCILayout(tmp_path / "src").add_index(index, "multi")
    ref = f"docker://{registry.addr}/skopeo/multi:multi"

    skopeo.copy(f"oci:{tmp_path / 'src'}:multi", ref, "--all")
    skopeo.copy(ref, f"oci:{tmp_path / 'back'}:multi", "--multi-arch", "all")

    assert_layouts_match(tmp_path / "src", tmp_path / "back", "multi")
    response = registry_manifest(registry, "skopeo/multi", "multi")
    assert response.status_code == 200
    assert response.headers["content-type"] == MT_INDEX
    assert response.content == index.manifest.data
    for image in index.images:
        child = registry_manifest(registry, "skopeo/multi", image.manifest.digest)
        assert child.status_code == 200
        assert child.content == image.manifest.data

    # Without --all, skopeo picks the one platform it is asked for out of the index.
    arm64 = next(image for image in index.images if image.arch == "arm64")
    skopeo(
        "--override-arch",
        "arm64",
        "--override-os",
        "linux",
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--preserve-digests",
        ref,
        f"oci:{tmp_path / 'arm'}:arm",
    )
    assert read_layout(tmp_path / "arm")["arm"]["digest"] == arm64.manifest.digest
    verify_layout(tmp_path / "arm")
    assert reachable(tmp_path / "arm", arm64.manifest.digest) == {
        blob.digest for blob in (*arm64.blobs, arm64.manifest)
    }
    assert_store_consistent(registry.data_dir)


def test_inspect_raw(registry: DockyardServer, skopeo: Skopeo, tmp_path: Path):
    image = make_image([10 * KIB, 20 * KIB], seed=11, arch="arm64")
    OCILayout(tmp_path / "src").add_image(image, "v1")
    ref = f"docker://{registry.addr}/skopeo/inspect:v1"
    skopeo.copy(f"oci:{tmp_path / 'src'}:v1", ref)

    raw = skopeo("inspect", "--tls-verify=false", "--raw", ref).stdout
    assert raw.encode().rstrip(b"\n") == image.manifest.data.rstrip(b"\n")
    config = skopeo("inspect", "--tls-verify=false", "--raw", "--config", ref).stdout
    assert config.encode().rstrip(b"\n") == image.config.data

    info = json.loads(skopeo("inspect", "--tls-verify=false", ref).stdout)
    assert info["Digest"] == image.manifest.digest
    assert info["Architecture"] == "arm64"
    assert info["Os"] == "linux"
    assert info["Layers"] == [layer.digest for layer in image.layers]
    assert "v1" in info["RepoTags"]

    by_digest = f"docker://{registry.addr}/skopeo/inspect@{image.manifest.digest}"
    raw = skopeo("inspect", "--tls-verify=false", "--raw", by_digest).stdout
    assert raw.encode().rstrip(b"\n") == image.manifest.data.rstrip(b"\n")

    missing = skopeo("inspect", "--tls-verify=false", "--raw", ref[:-2] + "nope", check=False)
    assert missing.returncode != 0
    assert "manifest unknown" in missing.stderr.lower()


def test_list_tags(registry: DockyardServer, skopeo: Skopeo, tmp_path: Path):
    first = make_image([4 * KIB], seed=21)
    second = make_image([4 * KIB], seed=22)
    layout = OCILayout(tmp_path / "src")
    layout.add_image(first, "first")
    layout.add_image(second, "second")
    repo = f"{registry.addr}/skopeo/tags"
    tags = ["1.0", "1.1", "latest", "v2-rc_1"]
    for tag in tags:
        source = "first" if tag != "v2-rc_1" else "second"
        skopeo.copy(f"oci:{tmp_path / 'src'}:{source}", f"docker://{repo}:{tag}")

    listed = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{repo}").stdout)
    assert listed["Repository"] == repo
    assert sorted(listed["Tags"]) == sorted(tags)

    unknown = skopeo(
        "list-tags", "--tls-verify=false", f"docker://{registry.addr}/skopeo/none", check=False
    )
    assert unknown.returncode != 0
    assert "name unknown" in unknown.stderr.lower() or "not found" in unknown.stderr.lower()


def test_delete(registry: DockyardServer, skopeo: Skopeo, tmp_path: Path):
    keep = make_image([8 * KIB], seed=31)
    drop = make_image([8 * KIB], seed=32)
    layout = OCILayout(tmp_path / "src")
    layout.add_image(keep, "keep")
    layout.add_image(drop, "drop")
    repo = f"{registry.addr}/skopeo/delete"
    skopeo.copy(f"oci:{tmp_path / 'src'}:keep", f"docker://{repo}:keep")
    skopeo.copy(f"oci:{tmp_path / 'src'}:drop", f"docker://{repo}:drop")
    skopeo.copy(f"oci:{tmp_path / 'src'}:drop", f"docker://{repo}:drop-alias")

    # skopeo delete resolves the tag and deletes the manifest by digest: both tags go.
    skopeo("delete", "--tls-verify=false", f"docker://{repo}:drop")
    gone = skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{repo}:drop", check=False)
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr.lower()
    assert registry_manifest(registry, "skopeo/delete", drop.manifest.digest).status_code == 404
    listed = json.loads(skopeo("list-tags", "--tls-verify=false", f"docker://{repo}").stdout)
    assert listed["Tags"] == ["keep"]

    # Deleting by digest; then nothing is left to delete.
    skopeo("delete", "--tls-verify=false", f"docker://{repo}@{keep.manifest.digest}")
    assert registry_manifest(registry, "skopeo/delete", "keep").status_code == 404
    again = skopeo(
        "delete", "--tls-verify=false", f"docker://{repo}@{keep.manifest.digest}", check=False
    )
    assert again.returncode != 0
    assert_store_consistent(registry.data_dir)


def test_htpasswd_credentials(
    dockyard_server: DockyardServerFactory, skopeo: Skopeo, tmp_path: Path
):
    users = write_htpasswd(tmp_path / "htpasswd", {"user": "pass", "other": "s3cret!"})
    server = dockyard_server("--auth", "htpasswd", "--htpasswd", str(users))
    image = make_image([50 * KIB, 3 * KIB], seed=41)
    OCILayout(tmp_path / "src").add_image(image, "v1")
    source = f"oci:{tmp_path / 'src'}:v1"
    ref = f"docker://{server.addr}/private/app:v1"

    for creds in ("user:wrong", "nobody:pass", "user:"):
        denied = skopeo.copy(source, ref, "--dest-creds", creds, check=False)
        assert denied.returncode != 0, creds
        message = denied.stderr.lower()
        assert "unauthorized" in message or "authentication required" in message, denied.stderr
        assert "panic" not in message
    anonymous = skopeo.copy(source, ref, "--dest-no-creds", check=False)
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower() or "authentication" in anonymous.stderr
    assert httpx.get(f"{server.url}/v2/private/app/tags/list").status_code == 401

    skopeo.copy(source, ref, "--dest-creds", "user:pass")
    skopeo.copy(ref, f"oci:{tmp_path / 'back'}:v1", "--src-creds", "other:s3cret!")
    assert_layouts_match(tmp_path / "src", tmp_path / "back", "v1")

    denied = skopeo("inspect", "--tls-verify=false", "--creds", "user:nope", ref, check=False)
    assert denied.returncode != 0
    assert "unauthorized" in denied.stderr.lower() or "authentication" in denied.stderr.lower()
    listed = skopeo(
        "list-tags",
        "--tls-verify=false",
        "--creds",
        "user:pass",
        f"docker://{server.addr}/private/app",
    )
    assert json.loads(listed.stdout)["Tags"] == ["v1"]

    log = server.log_text()
    assert "Traceback" not in log, server.log_tail()
    assert_store_consistent(server.data_dir)


def test_registry_to_registry_copy(registry: DockyardServer, skopeo: Skopeo, tmp_path: Path):
    """docker:// to docker:// in one registry: skopeo mounts the blobs across repositories."""
    image = make_image([40 * KIB, 2 * KIB], seed=51)
    OCILayout(tmp_path / "src").add_image(image, "v1")
    first = f"docker://{registry.addr}/skopeo/origin:v1"
    second = f"docker://{registry.addr}/skopeo/mirror/deep/name:v1"
    skopeo.copy(f"oci:{tmp_path / 'src'}:v1", first)
    skopeo.copy(first, second)
    skopeo.copy(second, f"oci:{tmp_path / 'back'}:v1")
    assert_layouts_match(tmp_path / "src", tmp_path / "back", "v1")
    for blob in image.blobs:
        response = httpx.get(f"{registry.url}/v2/skopeo/mirror/deep/name/blobs/{blob.digest}")
        assert response.status_code == 200
        assert response.content == blob.data
    assert_store_consistent(registry.data_dir)


def test_concurrent_pushes_share_layers(registry: DockyardServer, skopeo: Skopeo, tmp_path: Path):
    """Six skopeo copies at once, all uploading the same two base layers."""
    base = make_image([1 * MIB, 256 * KIB], seed=60)
    images = [make_image([(n + 1) * 32 * KIB], seed=61 + n, base=base) for n in range(6)]
    layout = OCILayout(tmp_path / "src")
    for number, image in enumerate(images):
        layout.add_image(image, f"t{number}")
    # half into one repository under different tags, half into repositories of their own
    refs = [
        f"docker://{registry.addr}/skopeo/race:t{n}"
        if n < 3
        else f"docker://{registry.addr}/skopeo/race-{n}:t{n}"
        for n in range(len(images))
    ]
    processes = [
        subprocess.Popen(
            [
                skopeo.binary,
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--preserve-digests",
                f"oci:{tmp_path / 'src'}:t{n}",
                ref,
            ],
            env=skopeo.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, ref in enumerate(refs)
    ]
    failures = []
    for process in processes:
        _out, err = process.communicate(timeout=180)
        if process.returncode != 0:
            failures.append(f"{' '.join(process.args)}: exit {process.returncode}\n{err}")
    assert not failures, "\n".join(failures)

    for n, ref in enumerate(refs):
        skopeo.copy(ref, f"oci:{tmp_path / f'back{n}'}:t{n}")
        assert_layouts_match(tmp_path / "src", tmp_path / f"back{n}", f"t{n}")
    stored = assert_store_consistent(registry.data_dir)
    for layer in base.layers:
        assert stored[layer.digest] == layer.size
    log = registry.log_text()
    assert "Traceback" not in log, registry.log_tail()
