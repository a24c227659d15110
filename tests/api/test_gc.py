"""Garbage collection: what it frees, and what it must never touch."""

from __future__ import annotations

import json
import os
import time

from dockyard.registry.gc import collect
from tests.api.conftest import OCI_INDEX, OCI_MANIFEST, Client, sha256


def _age(client: Client, digest: str, seconds: float) -> None:
    """Pretend a blob file was written `seconds` ago."""
    algorithm, encoded = digest.split(":")
    path = client.app.registry.store.root / "blobs" / algorithm / encoded[:2] / encoded
    when = time.time() - seconds
    os.utime(path, (when, when))


async def _age_everything(client: Client, seconds: float) -> None:
    registry = client.app.registry
    async for digest, _ in registry.store.digests():
        _age(client, str(digest), seconds)
    async with registry.meta.engine.begin() as conn:
        from sqlalchemy import update

        from dockyard.db.schema import blobs

        await conn.execute(update(blobs).values(last_used=time.time() - seconds))


async def test_dry_run_reports_and_delete_frees_unreferenced_blobs(client: Client) -> None:
    kept_manifest, _ = await client.push_image("a", "v1", [b"kept layer"])
    orphan = await client.push_blob("a", b"orphan layer, never in a manifest")
    await _age_everything(client, 7200)
    report = await collect(client.app.registry, dry_run=True, grace=3600)
    assert report.blob_count == 1
    assert f"blob {orphan} (33 bytes)" in report.lines
    # GET, not HEAD: a HEAD is how a pushing client checks a blob, and it renews the grace.
    assert (await client.http.get(f"/v2/a/blobs/{orphan}")).status_code == 200
    report = await collect(client.app.registry, dry_run=False, grace=3600)
    assert report.blob_count == 1
    assert (await client.http.head(f"/v2/a/blobs/{orphan}")).status_code == 404
    assert (await client.http.get("/v2/a/manifests/v1")).status_code == 200
    layer = await client.http.get(f"/v2/a/blobs/{sha256(b'kept layer')}")
    assert layer.content == b"kept layer"
    assert (await client.http.get(f"/v2/a/manifests/{kept_manifest}")).status_code == 200


async def test_fresh_upload_without_manifest_is_spared(client: Client) -> None:
    fresh = await client.push_blob("a", b"just uploaded, manifest coming")
    report = await collect(client.app.registry, dry_run=False, grace=3600)
    assert report.blob_count == 0
    assert (await client.http.head(f"/v2/a/blobs/{fresh}")).status_code == 200


async def test_recent_head_keeps_an_old_blob_alive(client: Client) -> None:
    old = await client.push_blob("a", b"old but about to be referenced")
    await _age_everything(client, 7200)
    # A client checks the blob exists before pushing its manifest: that use counts.
    assert (await client.http.head(f"/v2/a/blobs/{old}")).status_code == 200
    report = await collect(client.app.registry, dry_run=False, grace=3600)
    assert report.blob_count == 0


async def test_index_with_untagged_children_stays_whole(client: Client) -> None:
    amd, amd_body = await client.push_image("m", None, [b"amd64 layer"])
    arm, arm_body = await client.push_image("m", None, [b"arm64 layer"])
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": amd, "size": len(amd_body)},
                {"mediaType": OCI_MANIFEST, "digest": arm, "size": len(arm_body)},
            ],
        }
    ).encode()
    put = await client.http.put(
        "/v2/m/manifests/multi", content=index, headers={"content-type": OCI_INDEX}
    )
    assert put.status_code == 201
    orphan_digest, _ = await client.push_image("m", None, [b"untagged, unreferenced"])
    await _age_everything(client, 7200)
    report = await collect(client.app.registry, dry_run=False, delete_untagged=True, grace=3600)
    assert report.manifest_count == 1
    assert f"manifest {orphan_digest}" in report.lines
    for digest in (amd, arm):
        assert (await client.http.get(f"/v2/m/manifests/{digest}")).status_code == 200
    for layer in (b"amd64 layer", b"arm64 layer"):
        got = await client.http.get(f"/v2/m/blobs/{sha256(layer)}")
        assert got.content == layer
    assert (await client.http.get(f"/v2/m/manifests/{orphan_digest}")).status_code == 404
    gone = await client.http.head(f"/v2/m/blobs/{sha256(b'untagged, unreferenced')}")
    assert gone.status_code == 404


async def test_untagging_an_index_frees_it_and_then_its_children(client: Client) -> None:
    child, body = await client.push_image("m", None, [b"child layer"])
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": len(body)}],
        }
    ).encode()
    await client.http.put("/v2/m/manifests/t", content=index, headers={"content-type": OCI_INDEX})
    await client.http.delete("/v2/m/manifests/t")
    report = await collect(client.app.registry, dry_run=False, delete_untagged=True, grace=0)
    assert report.manifest_count == 2
    assert (await client.http.get(f"/v2/m/manifests/{child}")).status_code == 404


async def test_referrers_of_a_kept_manifest_are_kept(client: Client) -> None:
    subject, body = await client.push_image("s", "v1", [b"base"])
    signature, _ = await client.push_image(
        "s",
        None,
        [b"sig"],
        artifactType="application/vnd.example.sig",
        subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": len(body)},
    )
    report = await collect(client.app.registry, dry_run=False, delete_untagged=True, grace=0)
    assert report.manifest_count == 0
    assert (await client.http.get(f"/v2/s/manifests/{signature}")).status_code == 200


async def test_stale_uploads_are_removed(client: Client) -> None:
    location = (await client.http.post("/v2/a/blobs/uploads/")).headers["location"]
    upload_id = location.rsplit("/", 1)[1]
    path = client.app.registry.store.root / "uploads" / upload_id
    os.utime(path, (time.time() - 10 * 86400,) * 2)
    report = await collect(client.app.registry, dry_run=False, grace=3600, upload_ttl=86400)
    assert report.upload_count == 1
    assert (await client.http.get(location)).status_code == 404
