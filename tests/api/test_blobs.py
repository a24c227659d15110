"""Blob uploads in every form the spec allows, and blob reads."""

from __future__ import annotations

import hashlib
import os

from dockyard.registry.app import RegistryApp
from dockyard.server.app import open_registry
from tests.api.conftest import Client, error_code, sha256


async def test_version_check_names_the_api(client: Client) -> None:
    response = await client.http.get("/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


async def test_monolithic_upload_then_get_and_head(client: Client) -> None:
    data = os.urandom(3000)
    digest = await client.push_blob("team/app", data)
    head = await client.http.head(f"/v2/team/app/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["content-length"] == "3000"
    assert head.headers["docker-content-digest"] == digest
    body = (await client.http.get(f"/v2/team/app/blobs/{digest}")).content
    assert sha256(body) == digest


async def test_wrong_digest_is_refused_and_nothing_is_stored(client: Client) -> None:
    data = b"real content"
    wrong = sha256(b"other content")
    response = await client.http.post(f"/v2/a/blobs/uploads/?digest={wrong}", content=data)
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    assert (await client.http.head(f"/v2/a/blobs/{wrong}")).status_code == 404
    assert (await client.http.head(f"/v2/a/blobs/{sha256(data)}")).status_code == 404


async def test_malformed_and_unsupported_digests(client: Client) -> None:
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64, "nocolon"):
        response = await client.http.get(f"/v2/a/blobs/{bad}")
        assert response.status_code == 400, bad
        assert error_code(response) == "DIGEST_INVALID"


async def test_invalid_repository_names(client: Client) -> None:
    for bad in ("UPPER/case", "a//b", "-lead", "trail-", "a" * 256):
        response = await client.http.get(f"/v2/{bad}/tags/list")
        assert response.status_code == 400, bad
        assert error_code(response) == "NAME_INVALID"


async def test_post_put_upload_and_status(client: Client) -> None:
    start = await client.http.post("/v2/a/blobs/uploads/")
    assert start.status_code == 202
    location = start.headers["location"]
    assert start.headers["docker-upload-uuid"] in location
    status = await client.http.get(location)
    assert status.status_code == 204
    assert status.headers["range"] == "0-0"
    data = os.urandom(5000)
    done = await client.http.put(f"{location}?digest={sha256(data)}", content=data)
    assert done.status_code == 201
    assert done.headers["location"] == f"/v2/a/blobs/{sha256(data)}"
    assert (await client.http.get(location)).status_code == 404


async def test_chunked_upload_in_order_and_out_of_order(client: Client) -> None:
    data = os.urandom(10_000)
    location = (await client.http.post("/v2/a/blobs/uploads/")).headers["location"]
    first = await client.http.patch(
        location, content=data[:4000], headers={"content-range": "0-3999"}
    )
    assert first.status_code == 202
    assert first.headers["range"] == "0-3999"
    skipped = await client.http.patch(
        location, content=data[5000:], headers={"content-range": "5000-9999"}
    )
    assert skipped.status_code == 416
    assert skipped.headers["range"] == "0-3999"
    second = await client.http.patch(
        location, content=data[4000:], headers={"content-range": "4000-9999"}
    )
    assert second.status_code == 202
    status = await client.http.get(location)
    assert status.headers["range"] == "0-9999"
    done = await client.http.put(f"{location}?digest={sha256(data)}")
    assert done.status_code == 201
    assert (await client.http.get(f"/v2/a/blobs/{sha256(data)}")).content == data


async def test_streamed_patch_without_content_range(client: Client) -> None:
    data = os.urandom(2048)
    location = (await client.http.post("/v2/a/blobs/uploads/")).headers["location"]
    await client.http.patch(location, content=data[:1000])
    await client.http.patch(location, content=data[1000:])
    done = await client.http.put(f"{location}?digest={sha256(data)}")
    assert done.status_code == 201


async def test_upload_resumes_after_a_restart(client: Client, settings) -> None:
    data = os.urandom(8000)
    location = (await client.http.post("/v2/a/blobs/uploads/")).headers["location"]
    await client.http.patch(location, content=data[:3000], headers={"content-range": "0-2999"})
    # A new process knows nothing of the running hash: it must re-read what was stored.
    restarted = RegistryApp(open_registry(settings))
    client.http._transport.app = restarted  # type: ignore[attr-defined]
    status = await client.http.get(location)
    assert status.headers["range"] == "0-2999"
    await client.http.patch(location, content=data[3000:], headers={"content-range": "3000-7999"})
    done = await client.http.put(f"{location}?digest={sha256(data)}")
    assert done.status_code == 201
    assert (await client.http.get(f"/v2/a/blobs/{sha256(data)}")).content == data
    await restarted.registry.meta.engine.dispose()


async def test_final_put_with_wrong_digest_discards_the_upload(client: Client) -> None:
    location = (await client.http.post("/v2/a/blobs/uploads/")).headers["location"]
    response = await client.http.put(f"{location}?digest={sha256(b'x')}", content=b"y")
    assert response.status_code == 400
    assert error_code(response) == "DIGEST_INVALID"
    assert (await client.http.get(location)).status_code == 404


async def test_cancel_upload(client: Client) -> None:
    location = (await client.http.post("/v2/a/blobs/uploads/")).headers["location"]
    assert (await client.http.delete(location)).status_code == 204
    response = await client.http.get(location)
    assert response.status_code == 404
    assert error_code(response) == "BLOB_UPLOAD_UNKNOWN"


async def test_upload_of_another_repository_is_unknown(client: Client) -> None:
    location = (await client.http.post("/v2/a/blobs/uploads/")).headers["location"]
    other = location.replace("/v2/a/", "/v2/b/")
    assert error_code(await client.http.get(other)) == "BLOB_UPLOAD_UNKNOWN"
    assert error_code(await client.http.get("/v2/a/blobs/uploads/not-a-uuid")) == (
        "BLOB_UPLOAD_UNKNOWN"
    )


async def test_cross_repository_mount(client: Client) -> None:
    digest = await client.push_blob("source", b"shared layer")
    mounted = await client.http.post(f"/v2/target/blobs/uploads/?mount={digest}&from=source")
    assert mounted.status_code == 201
    assert mounted.headers["docker-content-digest"] == digest
    assert (await client.http.head(f"/v2/target/blobs/{digest}")).status_code == 200
    missing = sha256(b"never pushed")
    fallback = await client.http.post(f"/v2/target/blobs/uploads/?mount={missing}&from=source")
    assert fallback.status_code == 202
    assert "/v2/target/blobs/uploads/" in fallback.headers["location"]


async def test_automatic_mount_without_from(client: Client) -> None:
    digest = await client.push_blob("elsewhere", b"some layer")
    mounted = await client.http.post(f"/v2/here/blobs/uploads/?mount={digest}")
    assert mounted.status_code == 201


async def test_blob_is_per_repository(client: Client) -> None:
    digest = await client.push_blob("one", b"content")
    response = await client.http.get(f"/v2/two/blobs/{digest}")
    assert response.status_code == 404
    assert error_code(response) == "BLOB_UNKNOWN"


async def test_range_requests(client: Client) -> None:
    data = bytes(range(256)) * 4
    digest = await client.push_blob("a", data)
    part = await client.http.get(f"/v2/a/blobs/{digest}", headers={"range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = await client.http.get(f"/v2/a/blobs/{digest}", headers={"range": "bytes=-4"})
    assert tail.content == data[-4:]
    beyond = await client.http.get(f"/v2/a/blobs/{digest}", headers={"range": "bytes=5000-"})
    assert beyond.status_code == 416


async def test_delete_blob(client: Client) -> None:
    digest = await client.push_blob("a", b"to delete")
    assert (await client.http.delete(f"/v2/a/blobs/{digest}")).status_code == 202
    assert (await client.http.head(f"/v2/a/blobs/{digest}")).status_code == 404
    assert (await client.http.delete(f"/v2/a/blobs/{digest}")).status_code == 404


async def test_sha512_blob(client: Client) -> None:
    data = b"sha512 content"
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    response = await client.http.post(f"/v2/a/blobs/uploads/?digest={digest}", content=data)
    assert response.status_code == 201
    assert (await client.http.get(f"/v2/a/blobs/{digest}")).content == data
    location = (await client.http.post("/v2/a/blobs/uploads/")).headers["location"]
    await client.http.patch(location, content=data)
    assert (await client.http.put(f"{location}?digest={digest}")).status_code == 201


async def test_unknown_endpoint_and_method(client: Client) -> None:
    assert (await client.http.get("/v2/a/nothing/here")).status_code == 404
    response = await client.http.post("/v2/a/manifests/latest")
    assert response.status_code == 405
    assert error_code(response) == "UNSUPPORTED"
