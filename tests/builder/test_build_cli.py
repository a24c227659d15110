"""`dockyard build` behaves like the classic Docker builder: its output, the build cache,
--no-cache, --rm, --target, --build-arg, failing steps, contexts from stdin and git, and
untrusted contexts."""

from __future__ import annotations

import io
import os
import re
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.builder.conftest import Build, GitDaemon, build, git, write_context
from tests.engine.conftest import Dockyard, add_file, cleanup_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="builds need root (runc, overlayfs)")

LAYERED = """\
FROM bb
RUN echo base > /base
COPY early.txt /early.txt
RUN cat /early.txt > /early-copy
ENV STAGE=late
COPY late.txt /late.txt
RUN cat /late.txt > /late-copy
CMD ["cat", "/late-copy"]
"""


def layered(tmp_path: Path) -> Path:
    return write_context(
        tmp_path / "layered",
        {"Dockerfile": LAYERED, "early.txt": "early\n", "late.txt": "late v1\n"},
    )


def ok(result: Build) -> Build:
    assert result.returncode == 0, result.output
    return result


def image_ids(dy: Dockyard) -> list[str]:
    return sorted(dy("images", "-a", "-q", "--no-trunc").stdout.split())


def container_ids(dy: Dockyard) -> list[str]:
    return sorted(dy("ps", "-a", "-q", "--no-trunc").stdout.split())


def short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def cat(dy: Dockyard, image: str, path: str) -> str:
    return dy("run", "--rm", image, "cat", path, real=True).stdout


# --- output and cache --------------------------------------------------------------------------


def test_classic_output_and_a_fully_cached_rebuild(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    ctx = layered(tmp_path)
    first = ok(build(dy, "-t", "app:v1", str(ctx)))
    steps = first.steps
    assert [step.number for step in steps] == list(range(1, 9))
    assert all(f"Step {n}/8 : " in first.stdout for n in range(1, 9))
    assert steps[0].instruction == "FROM bb"
    assert steps[0].lines[0] == f" ---> {short(bb)}"
    for step in steps[1:]:
        assert not step.cached, step
        assert re.fullmatch(r" ---> [0-9a-f]{12}", step.lines[-1]), step
    run_steps = [step for step in steps if step.instruction.startswith("RUN")]
    for step in run_steps:
        running = [line for line in step.lines if line.startswith(" ---> Running in ")]
        assert len(running) == 1, step
        container = running[0].removeprefix(" ---> Running in ")
        assert f"Removing intermediate container {container}" in step.lines
    assert first.stdout.splitlines()[-2:] == [
        f"Successfully built {first.image_id}",
        "Successfully tagged app:v1",
    ]
    assert steps[-1].lines[-1] == f" ---> {first.image_id}"
    assert cat(dy, "app:v1", "/late-copy") == "late v1\n"
    assert container_ids(dy) == []

    again = ok(build(dy, "-t", "app:v1", str(ctx)))
    assert all(step.cached for step in again.steps[1:]), again.stdout
    assert not any(step.ran for step in again.steps), again.stdout
    assert again.image_id == first.image_id

    # a new mtime with the same content is still a cache hit: only contents are checksummed
    os.utime(ctx / "late.txt", (1, 1))
    assert ok(build(dy, "-t", "app:v1", str(ctx))).image_id == first.image_id


def test_editing_a_late_file_invalidates_from_its_copy(
    dy: Dockyard, bb: str, tmp_path: Path
) -> None:
    ctx = layered(tmp_path)
    first = ok(build(dy, "-t", "app:v1", str(ctx)))
    (ctx / "late.txt").write_text("late v2\n")
    second = ok(build(dy, "-t", "app:v2", str(ctx)))
    cached = [step.cached for step in second.steps[1:]]
    assert cached == [True, True, True, True, False, False, False], second.stdout
    assert second.image_id != first.image_id
    assert cat(dy, "app:v2", "/late-copy") == "late v2\n"
    assert cat(dy, "app:v1", "/late-copy") == "late v1\n"


def test_no_cache_rebuilds_every_step(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    ctx = layered(tmp_path)
    first = ok(build(dy, "-t", "app:v1", str(ctx)))
    again = ok(build(dy, "--no-cache", "-t", "app:v1", str(ctx)))
    assert "Using cache" not in again.stdout
    assert all(step.ran for step in again.steps if step.instruction.startswith("RUN"))
    assert again.image_id != first.image_id
    assert dy("images", "-q", "app").stdout.split() == [again.image_id]


def test_rm_false_keeps_the_intermediate_containers(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    ctx = layered(tmp_path)
    kept = ok(build(dy, "--rm=false", "-t", "app:v1", str(ctx)))
    assert "Removing intermediate container" not in kept.stdout
    running = re.findall(r"^ ---> Running in ([0-9a-f]{12})$", kept.stdout, re.M)
    run_steps = [step for step in kept.steps if step.instruction.startswith("RUN")]
    assert all(step.ran for step in run_steps)
    assert len(running) >= len(run_steps) == 3
    listed = dy("ps", "-a").stdout
    for container in running:
        assert container in listed
    assert len(container_ids(dy)) == len(running)

    ok(build(dy, "--no-cache", "--rm=true", "-t", "app:v2", str(ctx)))
    assert len(container_ids(dy)) == len(running)


def test_intermediate_images_are_listed_as_none(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    result = ok(build(dy, "-t", "app:v1", str(layered(tmp_path))))
    every = dy("images", "-a").stdout.splitlines()[1:]
    untagged = [row for row in every if row.split()[:2] == ["<none>", "<none>"]]
    step_ids = {line.removeprefix(" ---> ") for step in result.steps[1:-1] for line in step.lines}
    assert len(untagged) == 6, every
    for row in untagged:
        assert row.split()[2] in step_ids
    plain = dy("images").stdout.splitlines()[1:]
    assert sorted(row.split()[0] for row in plain) == ["app", "bb"]


# --- failures -----------------------------------------------------------------------------------


def test_a_failing_run_shows_its_output_and_code_and_tags_nothing(
    dy: Dockyard, bb: str, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "fails",
        {"Dockerfile": "FROM bb\nRUN echo good > /good\nRUN echo doomed-step-output && exit 3\n"},
    )
    ok(build(dy, "-t", "app:v1", str(layered(tmp_path))))
    previous = dy("images", "-q", "--no-trunc", "app:v1").stdout
    before = set(image_ids(dy))

    failed = build(dy, "-t", "app:v1", "-t", "fresh:v1", str(ctx))
    assert failed.returncode == 1
    assert "doomed-step-output" in failed.output
    assert "returned a non-zero code: 3" in failed.output
    assert "Successfully built" not in failed.stdout
    assert "Successfully tagged" not in failed.stdout
    assert dy("images", "-q", "--no-trunc", "app:v1").stdout == previous
    assert dy("images", "-q", "fresh").stdout == ""
    # the step that succeeded is kept for the cache, as untagged, and nothing else
    assert len(set(image_ids(dy)) - before) == 1


def test_missing_base_image_is_a_clear_error(dy: Dockyard, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM 127.0.0.1:9/nowhere/found:1\n"})
    failed = build(dy, "-t", "x", str(ctx))
    assert failed.returncode == 1
    assert "127.0.0.1:9/nowhere/found:1" in failed.stderr


# --- stages and args -------------------------------------------------------------------------


def test_target_stops_at_a_stage(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "stages",
        {
            "Dockerfile": "FROM bb AS first\nRUN echo first > /stage\n"
            "FROM first AS second\nRUN echo second-ran && echo second > /stage\n"
            "FROM bb\nCOPY --from=second /stage /stage\n",
        },
    )
    result = ok(build(dy, "--target", "first", "-t", "staged", str(ctx)))
    assert "second-ran" not in result.stdout
    assert "COPY --from=second" not in result.stdout
    assert cat(dy, "staged", "/stage") == "first\n"

    full = ok(build(dy, "-t", "staged:full", str(ctx)))
    assert cat(dy, "staged:full", "/stage") == "second\n"

    unknown = build(dy, "--target", "nope", "-t", "x", str(ctx))
    assert unknown.returncode == 1
    assert "nope" in unknown.stderr
    assert full.returncode == 0


def test_build_arg_changes_only_the_steps_after_its_arg(
    dy: Dockyard, bb: str, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "args",
        {
            "Dockerfile": "FROM bb\nRUN echo before > /before\nARG FLAVOR=plain\n"
            "COPY data.txt /data.txt\nRUN echo $FLAVOR > /flavor\n",
            "data.txt": "data\n",
        },
    )
    first = ok(build(dy, "-t", "args", str(ctx)))
    assert cat(dy, "args", "/flavor") == "plain\n"
    same = ok(build(dy, "--build-arg", "FLAVOR=plain", "-t", "args", str(ctx)))
    assert same.image_id == first.image_id

    changed = ok(build(dy, "--build-arg", "FLAVOR=mint", "-t", "args", str(ctx)))
    by_instruction = {step.instruction.split()[0]: step for step in changed.steps}
    assert changed.steps[1].cached  # RUN before the ARG
    assert by_instruction["COPY"].cached  # does not use the argument
    assert not changed.steps[4].cached and changed.steps[4].ran  # RUN after the ARG
    assert cat(dy, "args", "/flavor") == "mint\n"
    assert changed.image_id != first.image_id


# --- contexts ---------------------------------------------------------------------------------


def test_context_from_a_tar_on_stdin(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        add_file(tar, "Dockerfile", b'FROM bb\nCOPY dir/msg /msg\nCMD ["cat", "/msg"]\n')
        add_file(tar, "dir/msg", b"from stdin\n")
    ok(build(dy, "-t", "stdin", "-", input=stream.getvalue()))
    assert dy("run", "--rm", "stdin", real=True).stdout == "from stdin\n"


def test_context_from_a_git_url(
    dy: Dockyard, bb: str, tmp_path: Path, git_daemon: GitDaemon
) -> None:
    work = write_context(
        tmp_path / "work",
        {
            "Dockerfile": "FROM bb\nRUN echo wrong-dockerfile\n",
            "app/Dockerfile": 'FROM bb\nCOPY msg /msg\nCMD ["cat", "/msg"]\n',
            "app/msg": "from main\n",
        },
    )
    git("init", "-q", "--initial-branch=main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "main", cwd=work)
    git("checkout", "-q", "-b", "feature", cwd=work)
    (work / "app" / "msg").write_text("from feature\n")
    git("commit", "-q", "-am", "feature", cwd=work)
    git("clone", "-q", "--bare", str(work), str(git_daemon.base / "repo.git"), cwd=tmp_path)

    url = git_daemon.url("repo.git")
    ok(build(dy, "-t", "fromgit:feature", f"{url}#feature:app"))
    assert dy("run", "--rm", "fromgit:feature", real=True).stdout == "from feature\n"
    ok(build(dy, "-t", "fromgit:main", f"{url}#main:app"))
    assert dy("run", "--rm", "fromgit:main", real=True).stdout == "from main\n"

    missing = build(dy, "-t", "x", f"{url}#no-such-branch:app")
    assert missing.returncode == 1
    assert "no-such-branch" in missing.stderr


# --- untrusted contexts -------------------------------------------------------------------------


def test_copy_from_outside_the_context_is_refused(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    (tmp_path / "outside").write_text("secret\n")
    ctx = write_context(tmp_path / "ctx", {"Dockerfile": "FROM bb\nCOPY ../outside /stolen\n"})
    before = image_ids(dy)
    refused = build(dy, "-t", "stolen", str(ctx))
    assert refused.returncode == 1
    assert "outside" in refused.stderr.lower()
    assert image_ids(dy) == before
    assert container_ids(dy) == []


def test_add_of_a_tar_with_parent_entries_is_refused(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    marker = f"dockyard-escape-{uuid.uuid4().hex}"
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        add_file(tar, "fine.txt", b"fine\n")
        add_file(tar, "../" * 12 + f"tmp/{marker}", b"escaped\n")
    ctx = write_context(
        tmp_path / "ctx", {"Dockerfile": "FROM bb\nADD evil.tar /\n", "evil.tar": evil.getvalue()}
    )
    before = image_ids(dy)
    refused = build(dy, "-t", "evil", str(ctx))
    assert refused.returncode == 1
    assert ".." in refused.stderr
    assert not Path("/tmp", marker).exists()
    assert image_ids(dy) == before
    assert container_ids(dy) == []
    assert dy("images", "-q", "evil").stdout == ""


def test_cache_from_an_image_built_elsewhere(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    """--cache-from: a fresh store (a second build worker, say) rebuilds from the image it
    pulled or loaded, as far as its history matches the Dockerfile, and no further."""
    ctx = layered(tmp_path)
    first = ok(build(dy, "-t", "app:v1", str(ctx)))
    archive = tmp_path / "app.tar"
    dy("save", "-o", str(archive), "bb", "app:v1")
    other = Dockyard(tmp_path / "other-store")
    try:
        other("load", "-i", str(archive))
        again = ok(build(other, "--cache-from", "app:v1", "-t", "app:v2", str(ctx)))
        assert all(step.cached for step in again.steps[1:]), again.stdout
        assert not any(step.ran for step in again.steps), again.stdout
        rebuilt = json_of(other, "app:v2")
        original = json_of(dy, first.image_id)
        assert rebuilt["RootFS"]["Layers"] == original["RootFS"]["Layers"]
        assert rebuilt["Config"]["Env"] == original["Config"]["Env"]
        assert rebuilt["Config"]["Cmd"] == ["cat", "/late-copy"]
        assert cat(other, "app:v2", "/late-copy") == "late v1\n"

        (ctx / "late.txt").write_text("late v2\n")
        edited = ok(build(other, "--cache-from", "app:v1", "-t", "app:v3", str(ctx)))
        cached = [step.instruction.split()[0] for step in edited.steps[1:] if step.cached]
        assert cached == ["RUN", "COPY", "RUN", "ENV"], edited.stdout
        assert cat(other, "app:v3", "/late-copy") == "late v2\n"

        missing = ok(build(other, "--no-cache", "--cache-from", "nope:1", str(ctx)))
        assert not any(step.cached for step in missing.steps[1:])
        elsewhere = Dockyard(tmp_path / "third-store")
        elsewhere("load", "-i", str(archive))
        unknown = ok(build(elsewhere, "--cache-from", "nope:1", "-t", "x", str(ctx)))
        assert "--cache-from nope:1: no such image here; not used" in unknown.stdout
    finally:
        for root in (tmp_path / "other-store", tmp_path / "third-store"):
            cleanup_root(root)


def test_cache_from_tells_copy_flags_apart(dy: Dockyard, bb: str, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "owned", {"Dockerfile": "FROM bb\nCOPY a.txt /a.txt\n", "a.txt": "a\n"}
    )
    ok(build(dy, "-t", "plain", str(ctx)))
    archive = tmp_path / "plain.tar"
    dy("save", "-o", str(archive), "bb", "plain")
    other = Dockyard(tmp_path / "other-store")
    try:
        other("load", "-i", str(archive))
        (ctx / "Dockerfile").write_text("FROM bb\nCOPY --chown=1000:1000 a.txt /a.txt\n")
        chowned = ok(build(other, "--cache-from", "plain", "-t", "owned", str(ctx)))
        assert not any(step.cached for step in chowned.steps[1:]), chowned.stdout
        owner = other("run", "--rm", "owned", "stat", "-c", "%u:%g", "/a.txt", real=True)
        assert owner.stdout.strip() == "1000:1000"
    finally:
        cleanup_root(tmp_path / "other-store")


def json_of(dy: Dockyard, image: str) -> dict:
    import json

    return json.loads(dy("inspect", image).stdout)[0]
