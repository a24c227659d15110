"""Manifests of every supported kind: validation, negotiation, deletion."""

from __future__ import annotations

import hashlib
import json

from tests.api.conftest import OCI_INDEX, OCI_MANIFEST, Client, error_code, sha256

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


async def test_put_get_head_by_tag_and_digest(client: Client) -> None:
    digest, manifest = await client.push_image("a/b", "v1", [b"layer"])
    for reference in ("v1", digest):
        response = await client.http.get(f"/v2/a/b/manifests/{reference}")
        assert response.status_code == 200
        assert response.content == manifest
        assert response.headers["content-type"] == OCI_MANIFEST
        assert response.headers["docker-content-digest"] == digest
        head = await client.http.head(f"/v2/a/b/manifests/{reference}")
        assert head.headers["content-length"] == str(len(manifest))
        assert head.content == b""


async def test_unknown_manifest_and_repository(client: Client) -> None:
    response = await client.http.get("/v2/nobody/manifests/latest")
    assert response.status_code == 404
    assert error_code(response) == "MANIFEST_UNKNOWN"


async def test_docker_schema2_and_manifest_list(client: Client) -> None:
    config = b'{"architecture":"arm64","os":"linux"}'
    layer = b"docker layer"
    body = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "digest": await client.push_blob("d", config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": await client.push_blob("d", layer),
                "size": len(layer),
            }
        ],
    }
    manifest = json.dumps(body).encode()
    put = await client.http.put(
        "/v2/d/manifests/arm", content=manifest, headers={"content-type": DOCKER_MANIFEST}
    )
    assert put.status_code == 201
    amd_digest, amd = await client.push_image("d", None, [b"amd layer"])
    listing = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": sha256(manifest),
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "arm64"},
                },
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": amd_digest,
                    "size": len(amd),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    ).encode()
    put = await client.http.put(
        "/v2/d/manifests/multi", content=listing, headers={"content-type": DOCKER_LIST}
    )
    assert put.status_code == 201, put.text
    full = await client.http.get(
        "/v2/d/manifests/multi", headers={"accept": f"{DOCKER_LIST}, {OCI_MANIFEST}"}
    )
    assert full.headers["content-type"] == DOCKER_LIST
    # The content is served as pushed whatever the Accept header says, as the spec requires.
    single = await client.http.get("/v2/d/manifests/multi", headers={"accept": OCI_MANIFEST})
    assert single.headers["docker-content-digest"] == sha256(listing)
    child = await client.http.get(f"/v2/d/manifests/{amd_digest}")
    assert child.content == amd


async def test_missing_blob_is_refused(client: Client) -> None:
    body = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "x/y", "digest": sha256(b"absent"), "size": 6},
        "layers": [],
    }
    response = await client.http.put(
        "/v2/a/manifests/t", content=json.dumps(body), headers={"content-type": OCI_MANIFEST}
    )
    assert response.status_code == 400
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert (await client.http.get("/v2/a/manifests/t")).status_code == 404


async def test_index_with_missing_child_is_refused(client: Client) -> None:
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}],
    }
    response = await client.http.put(
        "/v2/a/manifests/t", content=json.dumps(index), headers={"content-type": OCI_INDEX}
    )
    assert error_code(response) == "MANIFEST_BLOB_UNKNOWN"


async def test_invalid_manifests(client: Client) -> None:
    cases = [
        (b"not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (json.dumps({"schemaVersion": 1, "mediaType": OCI_MANIFEST}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "config": {"digest": "x"}}).encode(), OCI_MANIFEST),
        (b"{}", "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (b'{"schemaVersion": 2}', "application/x-unknown"),
    ]
    for body, content_type in cases:
        response = await client.http.put(
            "/v2/a/manifests/bad", content=body, headers={"content-type": content_type}
        )
        assert response.status_code == 400, body
        assert error_code(response) == "MANIFEST_INVALID", body


async def test_manifest_size_limit(client: Client) -> None:
    body = b" " * (4 * 1024 * 1024 + 1)
    response = await client.http.put(
        "/v2/a/manifests/big", content=body, headers={"content-type": OCI_MANIFEST}
    )
    assert response.status_code == 413


async def test_digest_in_url_must_match(client: Client) -> None:
    _, manifest = await client.push_image("a", "t", [b"l"])
    response = await client.http.put(
        f"/v2/a/manifests/{sha256(b'other')}",
        content=manifest,
        headers={"content-type": OCI_MANIFEST},
    )
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"


async def test_sha512_manifest_reference(client: Client) -> None:
    _, manifest = await client.push_image("a", "t", [b"l"])
    digest = "sha512:" + hashlib.sha512(manifest).hexdigest()
    put = await client.http.put(
        f"/v2/a/manifests/{digest}", content=manifest, headers={"content-type": OCI_MANIFEST}
    )
    assert put.status_code == 201
    assert put.headers["docker-content-digest"] == digest
    got = await client.http.get(f"/v2/a/manifests/{digest}")
    assert got.content == manifest


async def test_invalid_tag(client: Client) -> None:
    _, manifest = await client.push_image("a", "t", [b"l"])
    response = await client.http.put(
        "/v2/a/manifests/.bad", content=manifest, headers={"content-type": OCI_MANIFEST}
    )
    assert error_code(response) == "MANIFEST_INVALID"


async def test_retag_moves_the_tag(client: Client) -> None:
    first, _ = await client.push_image("a", "latest", [b"one"])
    second, _ = await client.push_image("a", "latest", [b"two"])
    got = await client.http.get("/v2/a/manifests/latest")
    assert got.headers["docker-content-digest"] == second != first


async def test_delete_by_digest_removes_tags(client: Client) -> None:
    digest, _ = await client.push_image("a", "v1", [b"x"])
    assert (await client.http.delete(f"/v2/a/manifests/{digest}")).status_code == 202
    assert (await client.http.get("/v2/a/manifests/v1")).status_code == 404
    assert (await client.http.get(f"/v2/a/manifests/{digest}")).status_code == 404
    assert (await client.http.delete(f"/v2/a/manifests/{digest}")).status_code == 404


async def test_delete_tag_keeps_the_manifest(client: Client) -> None:
    digest, _ = await client.push_image("a", "v1", [b"x"])
    assert (await client.http.delete("/v2/a/manifests/v1")).status_code == 202
    assert (await client.http.get("/v2/a/manifests/v1")).status_code == 404
    assert (await client.http.get(f"/v2/a/manifests/{digest}")).status_code == 200


async def test_artifact_manifest_and_subject_header(client: Client) -> None:
    subject, manifest = await client.push_image("a", "v1", [b"x"])
    blob = await client.push_blob("a", b"signature")
    artifact = json.dumps(
        {
            "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
            "artifactType": "application/vnd.example.sig",
            "blobs": [{"mediaType": "application/octet-stream", "digest": blob, "size": 9}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(manifest)},
        }
    ).encode()
    response = await client.http.put(
        f"/v2/a/manifests/{sha256(artifact)}",
        content=artifact,
        headers={"content-type": "application/vnd.oci.artifact.manifest.v1+json"},
    )
    assert response.status_code == 201, response.text
    assert response.headers["oci-subject"] == subject
