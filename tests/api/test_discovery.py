"""Tag lists, the catalog, and referrers, with pagination and filters."""

from __future__ import annotations

import json

from tests.api.conftest import OCI_MANIFEST, Client, error_code, sha256


async def test_tags_list_paginates_with_link(client: Client) -> None:
    for tag in ("c", "a", "b", "d"):
        await client.push_image("repo", tag, [b"layer"])
    whole = await client.http.get("/v2/repo/tags/list")
    assert whole.json() == {"name": "repo", "tags": ["a", "b", "c", "d"]}
    first = await client.http.get("/v2/repo/tags/list?n=2")
    assert first.json()["tags"] == ["a", "b"]
    assert first.headers["link"] == '</v2/repo/tags/list?n=2&last=b>; rel="next"'
    second = await client.http.get("/v2/repo/tags/list?n=2&last=b")
    assert second.json()["tags"] == ["c", "d"]
    assert "link" not in second.headers
    assert (await client.http.get("/v2/repo/tags/list?n=0")).json()["tags"] == []


async def test_tags_of_unknown_repository(client: Client) -> None:
    response = await client.http.get("/v2/nothing/tags/list")
    assert response.status_code == 404
    assert error_code(response) == "NAME_UNKNOWN"


async def test_catalog_paginates(client: Client) -> None:
    for name in ("zeta", "alpha/one", "beta"):
        await client.push_image(name, "t", [b"layer"])
    first = await client.http.get("/v2/_catalog?n=2")
    assert first.json() == {"repositories": ["alpha/one", "beta"]}
    assert first.headers["link"] == '</v2/_catalog?n=2&last=beta>; rel="next"'
    rest = await client.http.get("/v2/_catalog?n=2&last=beta")
    assert rest.json() == {"repositories": ["zeta"]}


async def _referrer(client: Client, subject: str, size: int, artifact_type: str) -> str:
    digest, _ = await client.push_image(
        "r",
        None,
        [artifact_type.encode()],
        artifactType=artifact_type,
        subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": size},
        annotations={"kind": artifact_type},
    )
    return digest


async def test_referrers_with_artifact_type_filter(client: Client) -> None:
    subject, manifest = await client.push_image("r", "v1", [b"base"])
    sig = await _referrer(client, subject, len(manifest), "application/vnd.example.sig")
    sbom = await _referrer(client, subject, len(manifest), "application/vnd.example.sbom")
    response = await client.http.get(f"/v2/r/referrers/{subject}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.oci.image.index.v1+json"
    index = response.json()
    assert {m["digest"] for m in index["manifests"]} == {sig, sbom}
    assert all(m["annotations"]["kind"] == m["artifactType"] for m in index["manifests"])
    filtered = await client.http.get(
        f"/v2/r/referrers/{subject}?artifactType=application/vnd.example.sbom"
    )
    assert filtered.headers["oci-filters-applied"] == "artifactType"
    assert [m["digest"] for m in filtered.json()["manifests"]] == [sbom]


async def test_referrers_of_unknown_subject_is_an_empty_index(client: Client) -> None:
    response = await client.http.get(f"/v2/r/referrers/{sha256(b'none')}")
    assert response.status_code == 200
    assert response.json()["manifests"] == []
    bad = await client.http.get("/v2/r/referrers/sha256:zz")
    assert error_code(bad) == "DIGEST_INVALID"


async def test_subject_may_be_pushed_before_its_subject_exists(client: Client) -> None:
    missing = sha256(b"later")
    digest = await _referrer(client, missing, 10, "application/vnd.example.sig")
    listed = (await client.http.get(f"/v2/r/referrers/{missing}")).json()["manifests"]
    assert [m["digest"] for m in listed] == [digest]
    _ = json
