"""Crash safety: SIGKILL the server in the middle of 8 concurrent blob uploads.

Each upload pushes part of a 16-30 MiB blob in acknowledged chunks, then starts one more
request whose body stops halfway, so the server dies with bytes of an unfinished request on
disk. After a restart on the same data dir the store must be consistent, blobs acknowledged
before the crash intact, and every upload completable: some by resuming their old session
(GET the upload URL for its offset, PATCH the rest, PUT with the digest), some by cancelling
it and starting afresh, and the monolithic ones (POST ?digest=) by uploading again.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import DockyardServer, DockyardServerFactory, assert_store_consistent

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
CHUNK = 2 * MIB
PIECE = 256 * 1024
REPO = "crash/blobs"
# 8 concurrent uploads: how each one is completed after the restart
MODES = ["resume"] * 4 + ["fresh"] * 2 + ["monolithic"] * 2


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Upload:
    number: int
    mode: str
    data: bytes
    kill_at: int  # acknowledged chunks stop here; the in-flight request starts here
    stall_after: int  # bytes of the in-flight request sent before it stalls
    location: str | None = None
    acked: int = 0
    on_disk_after_crash: int | None = None
    in_flight: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def upload_id(self) -> str | None:
        return urlsplit(self.location).path.rsplit("/", 1)[-1] if self.location else None


def make_uploads() -> list[Upload]:
    uploads = []
    for number, mode in enumerate(MODES):
        rng = random.Random(number)
        size = 16 * MIB + number * 2 * MIB + rng.randrange(1, 4096)
        data = rng.randbytes(size)
        kill_at = 0 if mode == "monolithic" else CHUNK * rng.randrange(2, 5)
        uploads.append(Upload(number, mode, data, kill_at, MIB + number * PIECE))
    return uploads


class BodyAbandoned(Exception):
    """Raised by a stalled request body once the server has been killed under it."""


def stalling_body(
    data: bytes, stall_after: int, started: threading.Event, release: threading.Event
) -> Iterator[bytes]:
    """Send `stall_after` bytes, then hang until `release`, then give up on the request."""
    for start in range(0, stall_after, PIECE):
        yield data[start : min(start + PIECE, stall_after)]
    started.set()
    release.wait(120)
    raise BodyAbandoned


def range_end(response: httpx.Response) -> int:
    """The offset a 202/204 upload answer reports: one past the end of its Range header."""
    first, _, last = response.headers["range"].removeprefix("bytes=").partition("-")
    assert first == "0", response.headers["range"]
    return int(last) + 1


def upload_until_crash(server: DockyardServer, upload: Upload, release: threading.Event) -> None:
    """Acknowledged chunks up to `kill_at`, then a request the server dies under."""
    try:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            if upload.mode == "monolithic":
                body = stalling_body(upload.data, upload.stall_after, upload.in_flight, release)
                request = http.build_request(
                    "POST",
                    f"/v2/{REPO}/blobs/uploads/?digest={upload.digest}",
                    content=body,
                    headers={
                        "content-length": str(len(upload.data)),
                        "content-type": "application/octet-stream",
                    },
                )
            else:
                response = http.post(f"/v2/{REPO}/blobs/uploads/")
                assert response.status_code == 202, response.text
                upload.location = response.headers["location"]
                while upload.acked < upload.kill_at:
                    chunk = upload.data[upload.acked : upload.acked + CHUNK]
                    end = upload.acked + len(chunk) - 1
                    response = http.patch(
                        upload.location,
                        content=chunk,
                        headers={
                            "content-range": f"{upload.acked}-{end}",
                            "content-type": "application/octet-stream",
                        },
                    )
                    assert response.status_code == 202, response.text
                    assert range_end(response) == end + 1
                    upload.acked = end + 1
                    upload.location = response.headers["location"]
                rest = upload.data[upload.acked :]
                body = stalling_body(rest, upload.stall_after, upload.in_flight, release)
                request = http.build_request(
                    "PATCH",
                    upload.location,
                    content=body,
                    headers={
                        "content-range": f"{upload.acked}-{len(upload.data) - 1}",
                        "content-length": str(len(rest)),
                        "content-type": "application/octet-stream",
                    },
                )
            try:
                response = http.send(request)
            except (BodyAbandoned, httpx.TransportError):
                return  # the server died under this request
            upload.error = AssertionError(
                f"upload {upload.number}: the in-flight request got an answer "
                f"{response.status_code} {response.text[:300]} though the server was killed"
            )
    except BaseException as exc:
        upload.error = exc
        upload.in_flight.set()


def uploads_dir_sizes(data_dir: Path) -> dict[str, int]:
    sizes = {}
    for entry in (data_dir / "uploads").iterdir():
        with contextlib.suppress(FileNotFoundError):
            sizes[entry.name] = entry.stat().st_size
    return sizes


def wait_for_partial_bodies(server: DockyardServer, uploads: list[Upload]) -> None:
    """Until the server has written part of every stalled request's body to disk."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sizes = uploads_dir_sizes(server.data_dir)
        session_ids = {u.upload_id for u in uploads if u.upload_id}
        chunked_ok = all(
            sizes.get(u.upload_id, 0) > u.acked for u in uploads if u.mode != "monolithic"
        )
        others = [size for name, size in sizes.items() if name not in session_ids and size > 0]
        monolithic = sum(u.mode == "monolithic" for u in uploads)
        if chunked_ok and len(others) >= monolithic:
            return
        time.sleep(0.05)
    pytest.fail(f"the server never received the stalled bodies: {sizes}")


def complete_upload(http: httpx.Client, upload: Upload) -> None:
    """After the restart: finish the upload the way its mode says."""
    if upload.mode == "resume":
        status = http.get(upload.location)
        assert status.status_code == 204, status.text
        offset = range_end(status)
        # Nothing acknowledged is lost, and the offset is exactly what the server had stored
        # when it died, bytes of the killed request included.
        assert upload.acked <= offset <= len(upload.data), (upload.number, offset, upload.acked)
        assert offset == upload.on_disk_after_crash, (upload.number, offset)
        assert status.headers["docker-upload-uuid"] == upload.upload_id
        location = status.headers["location"]
        while offset < len(upload.data):
            chunk = upload.data[offset : offset + CHUNK]
            end = offset + len(chunk) - 1
            response = http.patch(
                location, content=chunk, headers={"content-range": f"{offset}-{end}"}
            )
            assert response.status_code == 202, response.text
            assert range_end(response) == end + 1
            offset = end + 1
            location = response.headers["location"]
        done = http.put(location, params={"digest": upload.digest})
    elif upload.mode == "fresh":
        cancelled = http.delete(upload.location)
        assert cancelled.status_code == 204, cancelled.text
        assert http.get(upload.location).status_code == 404
        response = http.post(f"/v2/{REPO}/blobs/uploads/")
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        # chunked PATCHes for all but the last 1 MiB, which rides on the closing PUT
        offset, last = 0, len(upload.data) - MIB
        while offset < last:
            chunk = upload.data[offset : min(offset + CHUNK, last)]
            response = http.patch(
                location,
                content=chunk,
                headers={"content-range": f"{offset}-{offset + len(chunk) - 1}"},
            )
            assert response.status_code == 202, response.text
            offset += len(chunk)
            location = response.headers["location"]
        done = http.put(location, params={"digest": upload.digest}, content=upload.data[last:])
    else:
        assert http.head(f"/v2/{REPO}/blobs/{upload.digest}").status_code == 404
        response = http.post(f"/v2/{REPO}/blobs/uploads/")
        assert response.status_code == 202, response.text
        done = http.put(
            response.headers["location"], params={"digest": upload.digest}, content=upload.data
        )
    assert done.status_code == 201, done.text
    assert done.headers["docker-content-digest"] == upload.digest


def run_in_threads(target, items) -> None:
    errors: list[BaseException] = []

    def guarded(item) -> None:
        try:
            target(item)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    if errors:
        raise errors[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_during_uploads(dockyard_server: DockyardServerFactory, workers: int):
    server = dockyard_server("--workers", str(workers))
    uploads = make_uploads()

    # Two small blobs acknowledged before the crash must survive it.
    with httpx.Client(base_url=server.url, timeout=60) as http:
        survivors = [random.Random(100 + n).randbytes(MIB + n) for n in range(2)]
        for data in survivors:
            response = http.post(
                f"/v2/{REPO}/blobs/uploads/", params={"digest": sha256(data)}, content=data
            )
            assert response.status_code == 201, response.text

    release = threading.Event()
    threads = [
        threading.Thread(target=upload_until_crash, args=(server, upload, release))
        for upload in uploads
    ]
    for thread in threads:
        thread.start()
    try:
        for upload in uploads:
            assert upload.in_flight.wait(120), f"upload {upload.number} never got going"
        for upload in uploads:
            if upload.error is not None:
                raise upload.error
        wait_for_partial_bodies(server, uploads)
        server.kill()
    finally:
        release.set()
        for thread in threads:
            thread.join(60)
    for upload in uploads:
        if upload.error is not None:
            raise upload.error

    # Dead server: whatever is on disk must already be consistent.
    stored = assert_store_consistent(server.data_dir)
    assert {sha256(data) for data in survivors} <= set(stored)
    assert not {u.digest for u in uploads} & set(stored), "a half-uploaded blob was committed"
    partial = uploads_dir_sizes(server.data_dir)
    for upload in uploads:
        if upload.upload_id:
            upload.on_disk_after_crash = partial[upload.upload_id]
            assert upload.on_disk_after_crash > upload.acked

    server.start()
    assert_store_consistent(server.data_dir)

    def finish(upload: Upload) -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            complete_upload(http, upload)

    run_in_threads(finish, uploads)

    with httpx.Client(base_url=server.url, timeout=120) as http:
        for data in [*survivors, *(u.data for u in uploads)]:
            digest = sha256(data)
            head = http.head(f"/v2/{REPO}/blobs/{digest}")
            assert head.status_code == 200
            assert int(head.headers["content-length"]) == len(data)
            hasher, size = hashlib.sha256(), 0
            with http.stream("GET", f"/v2/{REPO}/blobs/{digest}") as response:
                assert response.status_code == 200
                for chunk in response.iter_bytes():
                    hasher.update(chunk)
                    size += len(chunk)
            assert size == len(data)
            assert "sha256:" + hasher.hexdigest() == digest
        # Finished and cancelled sessions are gone.
        for upload in uploads:
            if upload.location:
                assert http.get(upload.location).status_code == 404

    stored = assert_store_consistent(server.data_dir)
    for data in [*survivors, *(u.data for u in uploads)]:
        assert stored[sha256(data)] == len(data)
    assert "Traceback" not in server.log_text().split("===== start #2")[-1], server.log_tail()
