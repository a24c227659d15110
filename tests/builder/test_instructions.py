"""Instruction rules (EXPOSE, HEALTHCHECK, ONBUILD, SHELL forms), ADD from a URL, and
Dockerfiles or contexts that must be refused with a clear error and the store unchanged."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.builder.errors import BuildError
from dockyard.builder.instructions import healthcheck, parse_duration, parse_ports
from dockyard.builder.parser import parse
from tests.builder.conftest import build, write_context
from tests.engine.conftest import Dockyard

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root (runc, overlayfs)")


# --- pure rules -----------------------------------------------------------------------------------


def test_expose_ports_ranges_and_protocols() -> None:
    assert parse_ports(["8080", "53/udp", "9000-9002/tcp", "8080/tcp"]) == [
        "53/udp",
        "8080/tcp",
        "9000/tcp",
        "9001/tcp",
        "9002/tcp",
    ]
    for bad in ("http", "80/icmp", "0", "70000", "90-80"):
        with pytest.raises(BuildError):
            parse_ports([bad])


def test_healthcheck_forms_and_durations() -> None:
    text = "HEALTHCHECK --interval=1m30s --timeout=500ms --retries=2 CMD curl -f x"
    check = healthcheck(parse(text).instructions[0])
    assert check == {
        "Test": ["CMD-SHELL", "curl -f x"],
        "Interval": 90 * 10**9,
        "Timeout": 500 * 10**6,
        "Retries": 2,
    }
    assert healthcheck(parse('HEALTHCHECK CMD ["true"]').instructions[0])["Test"] == ["CMD", "true"]
    assert healthcheck(parse("HEALTHCHECK NONE").instructions[0]) == {"Test": ["NONE"]}
    assert parse_duration("0", "interval") == 0
    for bad in ("HEALTHCHECK --interval=5 CMD true", "HEALTHCHECK --interval=10us CMD true",
                "HEALTHCHECK --retries=-1 CMD true", "HEALTHCHECK --bogus=1 CMD true",
                "HEALTHCHECK RUN true", "HEALTHCHECK CMD"):
        with pytest.raises(BuildError):
            healthcheck(parse(bad).instructions[0])


# --- builds ---------------------------------------------------------------------------------------


def _image_ids(dy: Dockyard) -> list[str]:
    return sorted(dy("images", "-a", "-q", "--no-trunc").stdout.split())


@needs_root
@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        ("FROM bb\n" + "ENV A=1\n" * 10_000, "more than 2000 instructions"),
        ("FROM bb\nEXPOSE 80/icmp\n", "invalid proto"),
        ("FROM bb\nONBUILD FROM bb\n", "FROM isn't allowed"),
        ("FROM bb\nFROBNICATE now\n", "unknown instruction: FROBNICATE"),
        ("FROM bb\nRUN <<EOF\necho never ended\n", "unterminated heredoc"),
        ("ENV A=1\nFROM bb\n", "first instruction must be FROM"),
        ("FROM bb\nCOPY --bogus=1 a /a\n", "Unknown flag: bogus"),
        ("FROM bb\nADD --checksum=sha256:00 a /a\n", "only supported for HTTP"),
    ],
    ids=["10k-instructions", "expose", "onbuild-from", "unknown", "heredoc", "no-from", "flag",
         "checksum-local"],
)
def test_bad_dockerfiles_are_clear_errors(
    dy: Dockyard, bb: str, tmp_path: Path, dockerfile: str, message: str
) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": dockerfile, "a": "a\n"})
    before = _image_ids(dy)
    failed = build(dy, "-t", "bad", str(ctx))
    assert failed.returncode == 1
    assert message in failed.stderr, failed.output
    assert _image_ids(dy) == before
    assert dy("ps", "-a", "-q").stdout == ""


@needs_root
def test_a_symlink_in_the_context_pointing_outside_is_refused(
    dy: Dockyard, bb: str, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text("outside\n")
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM bb\nCOPY link /stolen\n"})
    (ctx / "link").symlink_to(tmp_path / "secret")
    before = _image_ids(dy)
    refused = build(dy, "-t", "stolen", str(ctx))
    assert refused.returncode == 1
    assert "outside the build context" in refused.stderr
    assert _image_ids(dy) == before


@needs_root
def test_onbuild_triggers_run_in_the_child_build(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    parent = write_context(
        tmp_path / "parent",
        {"Dockerfile": "FROM bb\nONBUILD COPY msg /msg\nONBUILD RUN cat /msg > /seen\n"},
    )
    assert build(dy, "-t", "parent", str(parent)).returncode == 0
    child = write_context(
        tmp_path / "child", {"Dockerfile": "FROM parent\nCMD [\"cat\", \"/seen\"]\n",
                             "msg": "triggered\n"}
    )
    built = build(dy, "-t", "child", str(child))
    assert built.returncode == 0, built.output
    assert "# Executing 2 build triggers" in built.stdout
    assert dy("run", "--rm", "child", real=True).stdout == "triggered\n"
    [inspected] = json.loads(dy("inspect", "child").stdout)
    assert not inspected["Config"].get("OnBuild")


class _Files(http.server.BaseHTTPRequestHandler):
    payload = b"remote content\n"

    def do_GET(self) -> None:
        if self.path != "/files/tool.txt":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.send_header("Last-Modified", "Tue, 01 Jun 2021 10:00:00 GMT")
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@needs_root
def test_add_from_a_url_with_a_checksum(
    dy: Dockyard, bb: str, tmp_path: Path, file_server: str
) -> None:
    digest = hashlib.sha256(_Files.payload).hexdigest()
    url = f"{file_server}/files/tool.txt"
    ctx = write_context(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM bb\nADD --checksum=sha256:{digest} {url} /opt/\n"
                       "RUN stat -c '%a %Y' /opt/tool.txt > /mode\n"},
    )
    built = build(dy, "-t", "remote", str(ctx))
    assert built.returncode == 0, built.output
    assert dy("run", "--rm", "remote", "cat", "/opt/tool.txt", real=True).stdout == (
        "remote content\n"
    )
    assert dy("run", "--rm", "remote", "cat", "/mode", real=True).stdout == "600 1622541600\n"

    wrong = write_context(
        tmp_path / "wrong", {"Dockerfile": f"FROM bb\nADD --checksum=sha256:{'0' * 64} {url} /x\n"}
    )
    before = _image_ids(dy)
    refused = build(dy, "-t", "wrong", str(wrong))
    assert refused.returncode == 1
    assert "checksum mismatch" in refused.stderr
    assert _image_ids(dy) == before

    missing = write_context(
        tmp_path / "missing", {"Dockerfile": f"FROM bb\nADD {file_server}/nothing.txt /x\n"}
    )
    failed = build(dy, "-t", "missing", str(missing))
    assert failed.returncode == 1
    assert "404" in failed.stderr
