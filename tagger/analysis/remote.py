"""The engine on a Ray cluster (``scan --ray ADDRESS``): the same analysis, on other machines.

One Ray actor per machine of the cluster holds one :class:`~tagger.analysis.engine.Engine` (its
model compiled once; its decoding threads and children next to it, using that machine's cores
or its GPU) and analyses the files of a chunk together, so their windows share model calls as
in a local scan. Only a path (or the file's bytes) goes out and a result of a few KB comes back:
a window's log-mel (72 KB) never crosses the network. The driver keeps the cache, the policy
and the crash-safe writes (the :class:`~tagger.library.pipeline.Scanner` is the same), so every
guarantee of a local scan holds.

A machine that does not see a file as the driver does (not mounted there, or mounted
elsewhere, or a different file at that path: size and mtime are compared) says so, and the
driver sends the file's bytes. Actors are restarted and their calls retried when a worker
process or a machine dies, so a scan completes.
"""

from __future__ import annotations

import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Engine, Failure, Result
from tagger.analysis.model.resolved import Model, open_model
from tagger.errors import AudioError, EnvironmentProblem, first_line, install_hint

#: Files per actor call: enough tracks to fill the model's batches, few enough to spread a
#: small scan over every machine.
CHUNK = 8
#: Calls queued per actor, so a machine never waits for the driver between two chunks.
AHEAD = 2
#: A call whose process dies is made again on the restarted engine this often; then its files
#: go one by one, and one that still kills it is failed.
RETRIES = 2


@dataclass(frozen=True)
class _Item:
    path: str  # as the driver sees it
    size: int
    mtime_ns: int
    data: bytes | None = None  # the file itself, for a machine that does not see it


@dataclass(frozen=True)
class _Unseen:
    """The machine does not see ``path`` as the driver does: send its bytes."""

    path: str


def _sees(item: _Item) -> bool:
    try:
        st = os.stat(item.path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (item.size, item.mtime_ns)


def _as(result: Result, here: str, path: str) -> Result:
    """A result for a copy at ``here``, told of the driver's ``path``."""
    if isinstance(result, Failure):
        return replace(result, path=path, reason=result.reason.replace(here, path))
    return replace(result, path=path)


class Analyser:
    """The Ray actor: one engine on one machine."""

    def __init__(self, config: EngineConfig, model_file: tuple[str, bytes] | None) -> None:
        if model_file is not None:  # a trained model: the driver's file, same name, same bytes
            name, data = model_file
            self._model_dir = tempfile.TemporaryDirectory(prefix="genre-tagger-model-")
            path = os.path.join(self._model_dir.name, name)
            with open(path, "wb") as fh:
                fh.write(data)
            config = replace(config, model=path)
        self.engine = Engine(config)

    def pid(self) -> int:
        return os.getpid()

    def analyse(self, items: list[_Item]) -> list[Result | _Unseen]:
        out: dict[str, Result | _Unseen] = {}
        local: dict[str, str] = {}  # the path analysed here -> the driver's
        with tempfile.TemporaryDirectory(prefix="genre-tagger-") as tmp:
            for i, item in enumerate(items):
                if item.data is not None:
                    # its own folder, its own name: decoders and messages see the real name
                    here = os.path.join(tmp, str(i), os.path.basename(item.path) or "file")
                    os.mkdir(os.path.dirname(here))
                    with open(here, "wb") as fh:
                        fh.write(item.data)
                    local[here] = item.path
                elif _sees(item):
                    local[item.path] = item.path
                else:
                    out[item.path] = _Unseen(item.path)
            for result in self.engine.predict_paths(list(local)):
                out[local[result.path]] = _as(result, result.path, local[result.path])
        return [out[item.path] for item in items]


@dataclass
class _Chunk:
    items: list[_Item]  # in input order
    future: Any = None
    sent: list[_Item] = field(default_factory=list)  # what ``future`` answers for
    actor: int = 0
    results: dict[str, Result] = field(default_factory=dict)
    later: list[list[_Item]] = field(default_factory=list)  # calls still to make, in order


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EnvironmentProblem(f"--ray needs Ray: {install_hint('cluster')}") from None
    return ray


def _read(item: _Item) -> _Item | Failure:
    """``item`` with its bytes, or the reason the driver cannot read it either (checked as a
    local analysis does first: a FIFO or a device is never opened)."""
    from tagger.analysis.decode import check_readable
    from tagger.errors import os_errors

    try:
        check_readable(Path(item.path))
        with os_errors(Path(item.path), "read"), open(item.path, "rb") as fh:
            return replace(item, data=fh.read())
    except AudioError as e:
        return Failure(item.path, e.code, e.reason)


class RayEngine:
    """:meth:`Engine.predict_paths` on a Ray cluster, for the :class:`Scanner`.

    ``address``: a running cluster's (``ray start --head`` prints it; ``auto`` finds one on
    this machine), or ``local`` to start Ray on this machine only (for trying it out).
    """

    def __init__(self, config: EngineConfig, address: str, chunk: int = CHUNK) -> None:
        self.ray = _ray()
        self.config = config
        self.address = address
        self.chunk = chunk
        #: Files sent as bytes to a machine that did not see them (the scan's log says how many).
        self.sent = 0
        self.model: Model = open_model(config.model)
        self.actors: list[Any] = []

    def _start(self) -> None:
        """Join the cluster and start the actors: on the first file to analyse, not before (a
        scan that finds everything in the cache never needs them)."""
        ray, config, address = self.ray, self.config, self.address
        if not ray.is_initialized():
            # Ray records this process's command line (/proc/self/cmdline) as UTF-8 text: a
            # file name on it that is not UTF-8 would stop it. It gets the line escaped.
            utils: Any = getattr(getattr(ray, "_private", None), "utils", None)
            entrypoint = getattr(utils, "get_entrypoint_name", None)
            if entrypoint is not None:  # (a private function: left alone if Ray drops it)
                utils.get_entrypoint_name = lambda: entrypoint().encode(
                    "utf-8", "backslashreplace").decode("utf-8")
            try:
                # "local" always starts a new instance here; "auto" joins one started here
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise EnvironmentProblem(
                    f"cannot join the Ray cluster at {address}: {first_line(e)}") from None
            finally:
                if entrypoint is not None:
                    utils.get_entrypoint_name = entrypoint
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # A trained model file goes with the actors (same name and bytes: the same version).
        model_file = ((Path(config.model).name, Path(config.model).read_bytes())
                      if self.model.trained else None)
        actor = ray.remote(Analyser)
        for node in (n for n in ray.nodes() if n.get("Alive")):
            gpus = node.get("Resources", {}).get("GPU", 0)
            # One engine per machine, using all of it (as a local scan does); it asks Ray for
            # one CPU (and a GPU where there is one), so a restarted actor finds room anywhere.
            self.actors.append(actor.options(
                num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=-1, max_task_retries=RETRIES,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=True),
            ).remote(config, model_file))
        if not self.actors:
            raise EnvironmentProblem(f"the Ray cluster at {address} has no live machine")
        self._busy = [0] * len(self.actors)

    def pids(self) -> list[int]:
        """The actors' process ids (tests kill one)."""
        if not self.actors:
            self._start()
        return list(self.ray.get([a.pid.remote() for a in self.actors]))

    def _submit(self, chunk: _Chunk, items: list[_Item]) -> None:
        chunk.actor = min(range(len(self.actors)), key=self._busy.__getitem__)
        self._busy[chunk.actor] += 1
        chunk.sent = items
        chunk.future = self.actors[chunk.actor].analyse.remote(items)

    def _collect(self, chunk: _Chunk) -> bool:
        """Take the chunk's latest answer; False while some of its files must go again (with
        their bytes, or one by one)."""
        sent, got = chunk.sent, None
        try:
            got = self.ray.get(chunk.future)
        except EnvironmentProblem:
            raise  # a machine's problem (no ffmpeg there): no file is blamed
        except self.ray.exceptions.RayActorError:
            # The engine's process died RETRIES + 1 times on these files: one of them kills
            # it. One by one, the file that does is failed (recorded, retried when it changes).
            if len(sent) > 1:
                chunk.later[0:0] = [[item] for item in sent]
            else:
                chunk.results[sent[0].path] = Failure(
                    sent[0].path, "decoder-crashed", "analysing it ended the analysing process "
                    f"on a machine of the Ray cluster {RETRIES + 1} times")
        except self.ray.exceptions.RayError as e:
            raise EnvironmentProblem(f"the Ray cluster failed: {first_line(e)}") from None
        finally:
            self._busy[chunk.actor] -= 1
        resend: list[_Item] = []
        for item, result in zip(sent, got or ()):  # a later call answers for its own items
            if not isinstance(result, _Unseen):
                chunk.results[item.path] = result
                continue
            read = _read(item)
            if isinstance(read, Failure):
                chunk.results[item.path] = read
            else:
                resend.append(read)
        if resend:
            self.sent += len(resend)
            chunk.later.insert(0, resend)
        if chunk.later:
            self._submit(chunk, chunk.later.pop(0))
            return False
        return True

    def predict_paths(self, paths: Iterable[str | Path]) -> Iterator[Result]:
        """Every path's result, in input order, as the chunks come back."""
        todo = iter(paths)
        chunks: deque[_Chunk] = deque()
        while True:
            while len(chunks) < AHEAD * max(1, len(self.actors)):
                items = []
                for path in todo:
                    try:
                        st = os.stat(path)
                        items.append(_Item(str(path), st.st_size, st.st_mtime_ns))
                    except OSError:  # no machine sees it: the driver says why (_read)
                        items.append(_Item(str(path), -1, -1))
                    if len(items) == self.chunk:
                        break
                if not items:
                    break
                if not self.actors:
                    self._start()  # the first file to analyse: not before
                chunk = _Chunk(items)
                self._submit(chunk, items)
                chunks.append(chunk)
            if not chunks:
                return
            if self._collect(chunks[0]):
                done = chunks.popleft()
                yield from (done.results[i.path] for i in done.items)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
