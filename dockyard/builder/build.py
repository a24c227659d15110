"""Running a Dockerfile like Docker's classic builder: one committed image per instruction.

`Builder.build` walks the stages in order (up to `--target`). Every instruction is printed
as `Step N/M : …`; its cache key (parent image, expanded instruction, source checksums,
build args in use) is looked up first; otherwise RUN runs in a container under runc, COPY,
ADD and WORKDIR write into an overlay of the image, and the other instructions only change
the config. Each step is committed as an image whose parent is the previous one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.builder.cache import BuildCache, step_key
from dockyard.builder.checksums import ChecksumCache, cache_file
from dockyard.builder.context import Context
from dockyard.builder.errors import BuildError, CommandFailed
from dockyard.builder.instructions import (
    healthcheck,
    onbuild_trigger,
    parse_ports,
    shell_or_exec,
)
from dockyard.builder.parser import Dockerfile, Instruction, parse
from dockyard.builder.rootfs import discard_volume_writes, has_changes, mounted
from dockyard.builder.shell import expand, name_values
from dockyard.builder.sources import Entry, SourceTree
from dockyard.builder.stage import PROXY_ARGS, Stage
from dockyard.engine.store import NotFound, Store, StoreError
from dockyard.oci.image import EMPTY_LAYER_DIFF_ID, encode, history_entry, new_config, now_rfc3339

PullImage = Callable[[str], str]
MAX_LAYERS = 125


@dataclass(frozen=True, slots=True)
class Download:
    path: Path
    filename: str
    mtime: float | None = None


FetchURL = Callable[[str, Path], Download]


@dataclass(slots=True)
class BuildOptions:
    build_args: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    remove: bool = True
    force_remove: bool = False
    target: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "host"
    cache_from: list[str] = field(default_factory=list)


class Output:
    """The build log (bytes), either streamed or, with -q, held back for a failure report."""

    def __init__(self, stream: BinaryIO, quiet: bool = False) -> None:
        import io

        self.quiet = quiet
        self.stream: BinaryIO = io.BytesIO() if quiet else stream

    def line(self, text: str) -> None:
        self.stream.write(text.encode("utf-8", "surrogateescape") + b"\n")
        self.stream.flush()

    def held(self) -> bytes:
        import io

        return self.stream.getvalue() if isinstance(self.stream, io.BytesIO) else b""


def short(image_id: str | None) -> str:
    return (image_id or "").removeprefix("sha256:")[:12]


def _split_stages(dockerfile: Dockerfile) -> tuple[list[Instruction], list[list[Instruction]]]:
    meta: list[Instruction] = []
    stages: list[list[Instruction]] = []
    for instruction in dockerfile.instructions:
        if instruction.keyword == "FROM":
            stages.append([instruction])
        elif stages:
            stages[-1].append(instruction)
        elif instruction.keyword == "ARG":
            meta.append(instruction)
        else:
            raise BuildError(
                f"Dockerfile line {instruction.line}: the first instruction must be FROM "
                f"(after any ARG), not {instruction.keyword}"
            )
    if not stages:
        raise BuildError("the Dockerfile has no FROM instruction: no build stage in context")
    return meta, stages


def _stage_name(from_instruction: Instruction) -> str | None:
    words = from_instruction.rest.split()
    if len(words) == 3 and words[1].lower() == "as":
        return words[2].lower()
    if len(words) not in (1, 3):
        raise BuildError(f"FROM requires either one or three arguments: {from_instruction.rest}")
    return None


class Builder:
    def __init__(
        self,
        store: Store,
        context: Context,
        options: BuildOptions,
        output: Output,
        *,
        pull: PullImage | None = None,
        fetch: FetchURL | None = None,
        scratch: Path,
    ) -> None:
        self.store = store
        self.context = context
        self.options = options
        self.out = output
        self.pull = pull
        self.fetch = fetch
        self.scratch = scratch
        self.cache = BuildCache(store)
        self.cache_busted = options.no_cache
        self.cache_sources = [] if options.no_cache else self._cache_sources(options.cache_from)
        self.escape = "\\"
        self.meta_args: dict[str, str | None] = {}
        self.used_args: set[str] = set()
        self.stages: list[Stage] = []
        self.proxies = {k: v for k, v in options.build_args.items() if k in PROXY_ARGS}
        self.tree = (
            SourceTree(context.root, context.matcher, context=True) if context.root else None
        )
        checksum_path = cache_file(store.root, context.root) if context.local and context.root \
            else None
        self.checksums = ChecksumCache(checksum_path)
        self._scratch_count = 0

    # --- driving --------------------------------------------------------------------------

    def build(self) -> str:
        """Build up to the target stage; returns the final image ID."""
        dockerfile = parse(self.context.dockerfile)
        if not dockerfile.instructions:
            raise BuildError("the Dockerfile (Dockerfile) cannot be empty")
        self.escape = dockerfile.escape
        meta, stages = _split_stages(dockerfile)
        names = [_stage_name(s[0]) for s in stages]
        last = len(stages) - 1
        if self.options.target:
            wanted = self.options.target.lower()
            if wanted not in names:
                raise BuildError(f"failed to reach build target {self.options.target} in "
                                 "Dockerfile")
            last = names.index(wanted)
        stages = stages[: last + 1]
        if self.options.labels:
            pairs = " ".join(
                f'"{k}"=\'{v}\'' for k, v in sorted(self.options.labels.items())
            )
            label = parse(f"LABEL {pairs}").instructions[0]
            stages[-1].append(label)
        total = len(meta) + sum(len(s) for s in stages)
        step = 0
        for instruction in meta:
            step += 1
            self._step(step, total, instruction)
            self._global_arg(instruction)
        try:
            for index, instructions in enumerate(stages):
                for position, instruction in enumerate(instructions):
                    step += 1
                    self._step(step, total, instruction)
                    if position == 0:
                        stage = self._from(instruction, index, names[index])
                    else:
                        self._dispatch(stage, instruction)
                    self.out.line(f" ---> {short(stage.image_id)}")
        finally:
            self.checksums.save()
        final = self.stages[-1].image_id
        if final is None:
            raise BuildError("No image was generated. Is your Dockerfile empty?")
        unused = sorted(
            k for k in self.options.build_args if k not in self.used_args and k not in PROXY_ARGS
        )
        if unused:
            self.out.line(
                f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed"
            )
        return final

    def _step(self, step: int, total: int, instruction: Instruction) -> None:
        self.out.line(f"Step {step}/{total} : {instruction.original}")

    def _dispatch(self, stage: Stage, instruction: Instruction) -> None:
        handler = getattr(self, f"_{instruction.keyword.lower()}")
        handler(stage, instruction)

    def _expand(self, stage: Stage, word: str) -> str:
        return expand(word, stage.expansion_env(self.proxies), self.escape)

    # --- cache and commit -----------------------------------------------------------------

    def _cached(
        self,
        stage: Stage,
        parts: list[object],
        created_by: str,
        change: Callable[[], None] | None = None,
    ) -> str | None:
        """The step's cache key; prints Using cache and moves the stage on when it hits, in
        this store's cache or in a --cache-from image (whose history must continue the
        stage's with `created_by`; `change` then applies the step's config change)."""
        key = step_key(stage.image_id, parts)
        if self.cache_busted:
            return key
        found = self.cache.get(key)
        if found is not None:
            self.out.line(" ---> Using cache")
            stage.adopt(found, self.store.image_config(found))
            return None
        reused = self._from_cache_sources(stage, created_by)
        if reused is None:
            self.cache_busted = True
            return key
        self.out.line(" ---> Using cache")
        if change is not None:
            change()
        diff_ids, history = reused
        self._put_image(stage, key, diff_ids, history)
        return None

    def _cache_sources(self, refs: list[str]) -> list[dict[str, Any]]:
        """The configs of the --cache-from images that are in the store (others are named)."""
        sources = []
        for ref in refs:
            try:
                sources.append(self.store.image_config(self.store.resolve_image(ref)).body)
            except StoreError:
                self.out.line(f"[Warning] --cache-from {ref}: no such image here; not used")
        return sources

    def _from_cache_sources(
        self, stage: Stage, created_by: str
    ) -> tuple[list[str], list[dict[str, Any]]] | None:
        """The layers and history of a --cache-from image's next step, when the stage so far
        is that image's beginning and its next step was made by `created_by`."""
        done = len(stage.history)
        for source in self.cache_sources:
            history = source.get("history") or []
            diff_ids = (source.get("rootfs") or {}).get("diff_ids") or []
            if (
                len(history) <= done
                or history[:done] != stage.history
                or diff_ids[: len(stage.diff_ids)] != stage.diff_ids
                or history[done].get("created_by") != created_by
            ):
                continue
            if history[done].get("empty_layer"):
                return list(stage.diff_ids), history[: done + 1]
            layer = len(stage.diff_ids)
            if layer < len(diff_ids) and self.store.has_layer(diff_ids[layer]):
                return [*stage.diff_ids, diff_ids[layer]], history[: done + 1]
        return None

    def _commit(
        self,
        stage: Stage,
        key: str,
        created_by: str,
        upper: Path | None = None,
        *,
        own: bool = False,
    ) -> None:
        """Commit the step; `own` says the builder wrote `upper` itself (COPY, ADD, WORKDIR),
        so it moves into the store as it is, while a container's goes through a tar."""
        with self.store.creating_layers():
            diff_id = None
            if upper is not None and has_changes(upper):
                from dockyard.engine.commit import adopt_own_dir, layer_from_dir

                made = adopt_own_dir(self.store, upper) if own else layer_from_dir(
                    self.store, upper
                ).diff_id
                if made != EMPTY_LAYER_DIFF_ID:
                    diff_id = made
            diff_ids = [*stage.diff_ids, *([diff_id] if diff_id else [])]
            if len(diff_ids) > MAX_LAYERS:
                raise BuildError(f"max depth exceeded: an image has at most {MAX_LAYERS} layers")
            entry = history_entry(now_rfc3339(), created_by, empty_layer=diff_id is None)
            if stage.author:
                entry = {"created": entry["created"], "author": stage.author,
                         **{k: v for k, v in entry.items() if k != "created"}}
            self._put_image(stage, key, diff_ids, [*stage.history, entry])

    def _put_image(
        self, stage: Stage, key: str, diff_ids: list[str], history: list[dict[str, Any]]
    ) -> None:
        """Store the stage's next image (its config as it stands) and move the stage on."""
        body = new_config(
            diff_ids=diff_ids,
            history=history,
            config=stage.config,
            created=history[-1]["created"],
            author=stage.author or None,
            architecture=stage.architecture,
            os=stage.os,
        )
        if stage.variant:
            body["variant"] = stage.variant
        image_id = self.store.put_image(encode(body), parent=stage.image_id)
        self.cache.put(key, image_id)
        stage.image_id = image_id
        stage.diff_ids = diff_ids
        stage.history = body["history"]

    def _nop(self, stage: Stage, comment: str) -> str:
        return " ".join([*stage.shell, "#(nop) ", comment])

    def _metadata(self, stage: Stage, comment: str, change: Callable[[], None]) -> None:
        created_by = self._nop(stage, comment)
        key = self._cached(stage, ["meta", comment], created_by, change)
        if key is None:
            return
        change()
        self._commit(stage, key, created_by)

    # --- FROM and ARG ---------------------------------------------------------------------

    def _global_arg(self, instruction: Instruction) -> None:
        env = {k: v for k, v in self.meta_args.items() if v is not None}
        for key, raw in name_values(instruction.rest, "ARG", self.escape, allow_bare=True):
            value = expand(raw, env, self.escape) if raw is not None else None
            if key in self.options.build_args:
                value = self.options.build_args[key]
                self.used_args.add(key)
            self.meta_args[key] = value
            if value is not None:
                env[key] = value

    def _from(self, instruction: Instruction, index: int, name: str | None) -> Stage:
        env = {k: v for k, v in self.meta_args.items() if v is not None}
        words = instruction.rest.split()
        if not words:
            raise BuildError("FROM requires either one or three arguments")
        reference = expand(words[0], env, self.escape)
        if not reference:
            raise BuildError(f"base name ({words[0]}) should not be blank")
        stage = Stage(name=name, index=index)
        previous = {s.name: s for s in self.stages if s.name}
        if reference.lower() == "scratch":
            stage.adopt(None, None)
        elif reference.lower() in previous:
            source = previous[reference.lower()]
            stage.adopt(source.image_id, self.store.image_config(source.image_id)
                        if source.image_id else None)
            if source.image_id is None:
                stage.config = dict(source.config)
        else:
            image_id = self.base_image(reference)
            stage.adopt(image_id, self.store.image_config(image_id))
        stage.ensure_path()
        self.stages.append(stage)
        triggers = list(stage.config.get("OnBuild") or [])
        if triggers:
            stage.config["OnBuild"] = None
            self.out.line(f"# Executing {len(triggers)} build trigger"
                          f"{'s' if len(triggers) > 1 else ''}")
            for trigger in triggers:
                parsed = parse(trigger).instructions
                if len(parsed) != 1:
                    raise BuildError(f"invalid ONBUILD trigger {trigger!r}")
                onbuild_trigger(parsed[0].keyword)
                self._dispatch(stage, parsed[0])
        return stage

    def base_image(self, reference: str) -> str:
        """A base image from the store, pulled through the callback when missing."""
        try:
            return self.store.resolve_image(reference)
        except NotFound:
            if self.pull is None:
                raise BuildError(
                    f"unable to find image '{reference}': it is not in the local store and no "
                    "registry client is available to pull it"
                ) from None
        return self.pull(reference)

    def _arg(self, stage: Stage, instruction: Instruction) -> None:
        env = stage.expansion_env(self.proxies)
        for key, raw in name_values(instruction.rest, "ARG", self.escape, allow_bare=True):
            if raw is not None:
                value: str | None = expand(raw, env, self.escape)
            else:
                value = self.meta_args.get(key)
            if key in self.options.build_args:
                value = self.options.build_args[key]
            self.used_args.add(key)
            stage.args[key] = value
            if value is not None:
                env[key] = value
        self._metadata(stage, f"ARG {instruction.rest}", lambda: None)

    # --- metadata-only instructions -------------------------------------------------------

    def _env(self, stage: Stage, instruction: Instruction) -> None:
        env = stage.expansion_env(self.proxies)
        pairs = []
        for key, raw in name_values(instruction.rest, "ENV", self.escape):
            value = expand(raw or "", env, self.escape)
            key = expand(key, env, self.escape)
            pairs.append((key, value))

        def change() -> None:
            for key, value in pairs:
                stage.set_env(key, value)

        self._metadata(stage, "ENV " + " ".join(f"{k}={v}" for k, v in pairs), change)

    def _label(self, stage: Stage, instruction: Instruction) -> None:
        env = stage.expansion_env(self.proxies)
        pairs = [
            (expand(k, env, self.escape), expand(v or "", env, self.escape))
            for k, v in name_values(instruction.rest, "LABEL", self.escape)
        ]

        def change() -> None:
            labels = dict(stage.config.get("Labels") or {})
            labels.update(pairs)
            stage.config["Labels"] = labels

        comment = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
        self._metadata(stage, comment, change)

    def _maintainer(self, stage: Stage, instruction: Instruction) -> None:
        stage.author = instruction.rest
        self._metadata(stage, f"MAINTAINER {instruction.rest}", lambda: None)

    def _cmd(self, stage: Stage, instruction: Instruction) -> None:
        command = shell_or_exec(instruction, stage.shell)

        def change() -> None:
            stage.config["Cmd"] = command

        stage.cmd_set = True
        self._metadata(stage, f"CMD {_show(command)}", change)

    def _entrypoint(self, stage: Stage, instruction: Instruction) -> None:
        command = shell_or_exec(instruction, stage.shell)

        def change() -> None:
            stage.config["Entrypoint"] = command
            if not stage.cmd_set:
                stage.config["Cmd"] = None

        self._metadata(stage, f"ENTRYPOINT {_show(command)}", change)

    def _shell(self, stage: Stage, instruction: Instruction) -> None:
        if instruction.json_args is None or not instruction.json_args:
            raise BuildError("SHELL requires the arguments to be in JSON form")
        shell = instruction.json_args

        def change() -> None:
            stage.config["Shell"] = shell

        self._metadata(stage, f"SHELL {_show(shell)}", change)

    def _expose(self, stage: Stage, instruction: Instruction) -> None:
        words = [self._expand(stage, w) for w in instruction.rest.split()]
        if not words:
            raise BuildError("EXPOSE requires at least one argument")
        ports = parse_ports(words)

        def change() -> None:
            exposed = dict(stage.config.get("ExposedPorts") or {})
            for port in ports:
                exposed[port] = {}
            stage.config["ExposedPorts"] = exposed

        self._metadata(stage, "EXPOSE " + " ".join(ports), change)

    def _volume(self, stage: Stage, instruction: Instruction) -> None:
        paths = [self._expand(stage, w) for w in instruction.words()]
        if not paths:
            raise BuildError("VOLUME requires at least one argument")
        if any(not p.strip() for p in paths):
            raise BuildError("VOLUME specified can not be an empty string")

        def change() -> None:
            volumes = dict(stage.config.get("Volumes") or {})
            for path in paths:
                volumes[path] = {}
            stage.config["Volumes"] = volumes

        self._metadata(stage, f"VOLUME {_show(paths)}", change)

    def _user(self, stage: Stage, instruction: Instruction) -> None:
        user = self._expand(stage, instruction.rest)
        if not user:
            raise BuildError("USER requires exactly one argument")

        def change() -> None:
            stage.config["User"] = user

        self._metadata(stage, f"USER {user}", change)

    def _stopsignal(self, stage: Stage, instruction: Instruction) -> None:
        signal = self._expand(stage, instruction.rest)
        if not signal:
            raise BuildError("STOPSIGNAL requires exactly one argument")

        def change() -> None:
            stage.config["StopSignal"] = signal

        self._metadata(stage, f"STOPSIGNAL {signal}", change)

    def _healthcheck(self, stage: Stage, instruction: Instruction) -> None:
        check = healthcheck(instruction)

        def change() -> None:
            stage.config["Healthcheck"] = check

        self._metadata(stage, f"HEALTHCHECK {check}", change)

    def _onbuild(self, stage: Stage, instruction: Instruction) -> None:
        trigger = instruction.rest.strip()
        parsed = parse(trigger).instructions
        if len(parsed) != 1:
            raise BuildError("ONBUILD requires exactly one instruction")
        onbuild_trigger(parsed[0].keyword)

        def change() -> None:
            stage.config["OnBuild"] = [*(stage.config.get("OnBuild") or []), trigger]

        self._metadata(stage, f"ONBUILD {trigger}", change)

    # --- WORKDIR and RUN ------------------------------------------------------------------

    def _workdir(self, stage: Stage, instruction: Instruction) -> None:
        path = self._expand(stage, instruction.rest)
        if not path:
            raise BuildError("WORKDIR requires exactly one argument")
        current = stage.config.get("WorkingDir") or "/"
        workdir = posixpath.normpath(posixpath.join(current, path))
        workdir = "/" + workdir.lstrip("/")
        stage.config["WorkingDir"] = workdir
        comment = f"WORKDIR {workdir}"
        key = self._cached(stage, ["workdir", comment], self._nop(stage, comment))
        if key is None:
            return
        from dockyard.builder.copier import ROOT, ensure_dir

        with mounted(self.store, stage.diff_ids) as view:
            ensure_dir(view.rootfs, workdir, ROOT)
            self._commit(stage, key, self._nop(stage, comment), view.upper, own=True)

    def _run(self, stage: Stage, instruction: Instruction) -> None:
        argv = self._run_argv(stage, instruction)
        in_use = stage.args_in_use(self.proxies)
        shown = [(k, v) for k, v in in_use if k not in PROXY_ARGS or k in stage.args]
        prefix = [f"|{len(shown)}", *(f"{k}={v}" for k, v in shown)] if shown else []
        created_by = " ".join([*prefix, *argv])
        key = self._cached(stage, ["run", created_by], created_by)
        if key is None:
            return
        from dockyard.engine.containers import Containers
        from dockyard.engine.runner import monitor, remove

        config = dict(stage.config)
        env = dict(stage.env_pairs())
        for k, v in in_use:
            env.setdefault(k, v)
        config["Env"] = [f"{k}={v}" for k, v in env.items()]
        config["Cmd"] = argv
        config["Entrypoint"] = None
        config.pop("Healthcheck", None)
        container = Containers(self.store).create(
            image=short(stage.image_id) or "scratch",
            image_id=stage.image_id or "",
            argv=argv,
            config=config,
            diff_ids=stage.diff_ids,
            network=self.options.network,
        )
        self.out.line(f" ---> Running in {container.short_id}")
        code = monitor(
            self.store, container, attach=True, stdout=self.out.stream, stderr=self.out.stream
        )
        if code != 0:
            if self.options.force_remove:
                remove(self.store, container, force=True)
            raise CommandFailed(" ".join(argv), code)
        volumes = list(stage.config.get("Volumes") or {})
        if volumes:
            discard_volume_writes(container.upper, volumes, self._in_image(stage))
        try:
            self._commit(stage, key, created_by, container.upper)
        finally:
            if self.options.remove or self.options.force_remove:
                remove(self.store, container, force=True)
                self.out.line(f"Removing intermediate container {container.short_id}")

    def _in_image(self, stage: Stage) -> Callable[[str], bool]:
        layers = [self.store.layer_diff(d) for d in stage.diff_ids]
        return lambda rel: any(os.path.lexists(layer / rel) for layer in layers)

    def _run_argv(self, stage: Stage, instruction: Instruction) -> list[str]:
        if instruction.json_args is not None:
            if not instruction.json_args:
                raise BuildError("RUN requires at least one argument")
            return list(instruction.json_args)
        command = instruction.rest
        if not command:
            raise BuildError("RUN requires at least one argument")
        if instruction.heredocs:
            only = instruction.heredocs[0]
            if len(instruction.heredocs) == 1 and command.replace(" ", "").lstrip("<-").strip(
                "\"'"
            ) == only.name:
                return [*stage.shell, only.content]
            bodies = "".join(f"{h.content}{h.name}\n" for h in instruction.heredocs)
            command = f"{command}\n{bodies}"
        return [*stage.shell, command]

    # --- COPY and ADD ---------------------------------------------------------------------

    def _copy(self, stage: Stage, instruction: Instruction) -> None:
        self._transfer(stage, instruction, add=False)

    def _add(self, stage: Stage, instruction: Instruction) -> None:
        self._transfer(stage, instruction, add=True)

    def scratch_dir(self, prefix: str) -> Path:
        """A new empty directory under the build's scratch space."""
        self._scratch_count += 1
        path = self.scratch / f"{prefix}-{self._scratch_count}"
        path.mkdir(mode=0o755)
        return path

    def _transfer(self, stage: Stage, instruction: Instruction, *, add: bool) -> None:
        from dockyard.builder.transfer import Transfer

        keyword = instruction.keyword
        flags = dict(instruction.flags)
        allowed = {"from", "chown", "chmod", "link", "parents", "exclude"} if not add else {
            "chown", "chmod", "link", "checksum", "keep-git-dir"}
        unknown = set(flags) - allowed
        if unknown:
            raise BuildError(f"Unknown flag: {sorted(unknown)[0]}")
        env = stage.expansion_env(self.proxies)
        words = [expand(w, env, self.escape) for w in instruction.words()]
        if len(words) < 2:
            raise BuildError(f"{keyword} requires at least two arguments, but only one was "
                             "provided. Destination could not be determined.")
        sources, dest = words[:-1], words[-1]
        workdir = stage.config.get("WorkingDir") or "/"
        if not dest.startswith("/"):
            dest = posixpath.join(workdir, dest) if dest not in (".", "./") else workdir + "/"
        transfer = Transfer(self, stage, keyword, flags, env)
        with contextlib.ExitStack() as stack:
            items = transfer.collect(sources, [h for h in instruction.heredocs], stack)
            dest_is_dir = dest.endswith("/") or dest.endswith("/.")
            if len(items) > 1 and not dest_is_dir:
                raise BuildError(
                    f"When using {keyword} with more than one source file, the destination must "
                    "be a directory and end with a /"
                )
            summary = transfer.summary(items)
            flag_text = " ".join(f"--{k}={flags[k]}" for k in sorted(flags) if k != "link")
            # The flags go in the history too: a --cache-from image is matched on it alone.
            comment = " ".join(w for w in (keyword, flag_text, summary) if w) + f" in {dest} "
            key = self._cached(
                stage, ["transfer", comment, flag_text, sources], self._nop(stage, comment)
            )
            if key is None:
                return
            with mounted(self.store, stage.diff_ids) as view:
                transfer.write(items, view.rootfs, dest, dest_is_dir)
                self._commit(stage, key, self._nop(stage, comment), view.upper, own=True)

    # --- shared helpers for Transfer ------------------------------------------------------

    def stage_by_ref(self, ref: str) -> Stage | None:
        for stage in self.stages:
            if stage.name == ref.lower() or (ref.isdigit() and stage.index == int(ref)):
                return stage
        return None

    def context_tree(self, keyword: str) -> SourceTree:
        if self.tree is None:
            raise BuildError(f"{keyword} failed: there is no build context (the Dockerfile came "
                             "on stdin)")
        return self.tree

    def entries_checksum(self, entries: list[Entry]) -> str:
        return self.checksums.checksum(entries)


def _show(value: Any) -> str:
    import json

    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_regular(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


__all__ = ["BuildOptions", "Builder", "Download", "Output", "StoreError", "short"]
