"""``scan --ray``: a real two-node Ray cluster on this machine (``ray start --head`` and a second
``ray start --address``), the second node in a mount namespace where part of the library is not
there (a tmpfs over ``library/hidden``), as a machine without one of the NAS's mounts would be:
the files of one chunk are then partly seen, partly sent."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ffmpeg_encode, music_like
from sqlalchemy import create_engine, text

from tagger.tags import read_genres

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """Two Ray nodes, each a ``ray start --block`` in its own process group."""

    def __init__(self, hidden: Path, log: Path) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
                        RAY_AUTH_TOKEN=secrets.token_hex(32))
        self.procs: list[subprocess.Popen[bytes]] = []
        common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--block"]
        self._start([RAY, "start", "--head", "--port", str(self.port), "--include-dashboard",
                     "false", *common], log.with_name("head.log"))
        self._wait(1)
        # The second machine does not see the library: a tmpfs over it, in its own namespace.
        blind = (f"mount -t tmpfs none {hidden} && exec {RAY} start --address {self.address} "
                 + " ".join(common))
        unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
        self._start([*unshare, "sh", "-c", blind], log.with_name("worker.log"))
        self._wait(2)

    def _start(self, cmd: list[str], log: Path) -> None:
        with open(log, "ab") as out:
            self.procs.append(subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def _wait(self, nodes: int) -> None:
        probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
                 "print(sum(n['Alive'] for n in ray.nodes()))")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", probe, self.address], env=self.env,
                                 capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() == str(nodes):
                return
            assert all(p.poll() is None for p in self.procs), "a ray node did not start"
            time.sleep(1)
        raise AssertionError(f"the cluster did not reach {nodes} nodes")

    def stop(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, sig)
            time.sleep(2 if sig == signal.SIGTERM else 0)
        for p in self.procs:
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Path]]:
    base = tmp_path_factory.mktemp("cluster")
    library = base / "library"
    (library / "hidden").mkdir(parents=True)  # exists before the blind node mounts over it
    c = Cluster(library / "hidden", base / "ray.log")
    try:
        yield c, library
    finally:
        c.stop()


def make_library(root: Path) -> list[Path]:
    """Real encoded tracks in several formats, one damaged file, one name that is not UTF-8."""
    root.mkdir(parents=True, exist_ok=True)
    formats = [("mp3", ["-c:a", "libmp3lame", "-q:a", "4"]), ("flac", ["-c:a", "flac"]),
               ("ogg", ["-c:a", "libvorbis"]), ("m4a", ["-c:a", "aac", "-b:a", "128k"])]
    files = []
    for i in range(8):
        ext, args = formats[i % len(formats)]
        files.append(ffmpeg_encode(music_like(14.0 + i, seed=40 + i), 44_100,
                                   root / f"track {i:02d}.{ext}", args))
    odd = Path(os.fsdecode(bytes(root) + b"/caf\xe9 \xff.flac"))
    files.append(ffmpeg_encode(music_like(16.0, seed=60), 44_100, odd, ["-c:a", "flac"]))
    bad = root / "damaged.mp3"
    bad.write_bytes(files[0].read_bytes()[:2000] + os.urandom(30_000))
    files.append(bad)
    return files


def hide_every_other(files: list[Path], library: Path) -> list[Path]:
    """Move every other file under ``library/hidden`` (same relative place): in input order,
    seen and unseen files alternate, so every chunk holds both."""
    out = []
    for i, f in enumerate(files):
        if i % 2:
            dest = library / "hidden" / f.relative_to(library)
            dest.parent.mkdir(parents=True, exist_ok=True)
            f.rename(dest)
            f = dest
        out.append(f)
    return out


def rows(url: str, root: Path) -> dict[str, tuple]:  # type: ignore[type-arg]
    """The cache's rows by file name (the two scans' roots differ)."""
    from tagger.cache.store import decode_path

    engine = create_engine(url)
    with engine.connect() as conn:
        got = conn.execute(text("SELECT path, status, error_code, genre_scores, genres_written, "
                                "model_version, analyses FROM tracks")).all()
    engine.dispose()
    return {os.path.relpath(decode_path(r[0]), root): tuple(r[1:]) for r in got}


def scan(root: Path, db: str, *extra: str,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tagger", "scan", "--db", db, "--min-confidence",
                           "0.05", *extra, str(root)], capture_output=True, text=True, timeout=600,
                          env=dict(env or os.environ, TF_CPP_MIN_LOG_LEVEL="3"), cwd=REPO)


def test_a_scan_on_two_machines_writes_what_a_local_scan_writes(cluster, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                 postgres) -> None:
    """``scan --ray`` with a PostgreSQL cache against a local scan with SQLite, same files: the
    same tags in the files, the same rows in the caches (scores within 1e-5); the machine that
    cannot see the library analyses its share from bytes the driver sends."""
    c, library = cluster
    hide_every_other(make_library(library / "scan"), library)
    roots = [library / "scan", library / "hidden" / "scan"]
    local = tmp_path / "local"
    for r in roots:
        (local / r.relative_to(library)).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", str(r), str(local / r.relative_to(library))], check=True)
    db_ray, db_local = postgres.database(), f"sqlite:///{tmp_path / 'local.sqlite'}"
    mine = scan(local / "scan", db_local, str(local / "hidden" / "scan"))
    theirs = scan(roots[0], db_ray, str(roots[1]), "--ray", c.address, env=c.env)
    assert theirs.returncode == mine.returncode == 1, theirs.stderr  # the damaged file
    summary = "10 files: 9 analysed, 0 from the cache (0 moved), 0 unchanged; 9 tagged"
    assert summary in theirs.stderr and summary in mine.stderr, theirs.stderr
    # the damaged file's error names the driver's path, wherever it was decoded
    damaged = next(f for r in roots for f in r.iterdir() if f.name == "damaged.mp3")
    assert f"error {damaged}: decoding failed" in theirs.stderr
    a, b = rows(db_ray, library), rows(db_local, local)
    assert a.keys() == b.keys() and len(a) == 10
    for name in a:
        (st_a, err_a, gs_a, w_a, v_a, n_a), (st_b, err_b, gs_b, w_b, v_b, n_b) = a[name], b[name]
        assert (st_a, err_a, w_a, v_a, n_a) == (st_b, err_b, w_b, v_b, n_b), name
        if gs_a:
            sa, sb = json.loads(gs_a), json.loads(gs_b)
            assert max(abs(sa[g] - sb[g]) for g in sa) < 1e-5, name
    failed = [k for k in a if a[k][0] == "failed"]
    assert len(failed) == 1 and failed[0].endswith("damaged.mp3") and a[failed[0]][1] == "corrupt"
    for r in roots:
        for f in r.iterdir():
            assert read_genres(f) == read_genres(local / f.relative_to(library)), f.name
    # again: nothing is analysed twice, and Ray is not even needed
    again = scan(roots[0], db_ray, str(roots[1]), "--ray", c.address, env=c.env)
    assert "0 analysed" in again.stderr, again.stderr


KILL_DRIVER = r"""
import json, sys
from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Prediction
from tagger.analysis.remote import RayEngine
remote = RayEngine(EngineConfig(), sys.argv[1], chunk=2)
print("PIDS", json.dumps(remote.pids()), flush=True)
sys.stdin.readline()  # the test has the pids: go
out = [{"path": r.path, "raw": r.raw, "windows": r.windows} if isinstance(r, Prediction)
       else {"path": r.path, "code": r.code} for r in remote.predict_paths(sys.argv[2:])]
print("RESULTS", json.dumps({"results": out, "pids": remote.pids(), "sent": remote.sent}), flush=True)
"""


def test_a_worker_killed_mid_scan_is_replaced_and_its_files_done(cluster) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL one actor's process while it holds files: Ray restarts it, the call is retried,
    every file comes back with the same result as on this machine alone."""
    from tagger.analysis.config import EngineConfig
    from tagger.analysis.engine import Engine, Prediction

    c, library = cluster
    files = hide_every_other(make_library(library / "kill"), library)
    driver = subprocess.Popen([sys.executable, "-c", KILL_DRIVER, c.address, *map(str, files)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=c.env,
                              cwd=REPO)
    assert driver.stdin is not None and driver.stdout is not None
    try:
        line = driver.stdout.readline()
        assert line.startswith("PIDS"), line
        first_pids = json.loads(line.split(" ", 1)[1])
        assert len(first_pids) == 2  # one actor per machine
        victim = first_pids[0]
        driver.stdin.write("go\n")
        driver.stdin.flush()
        time.sleep(1.5)  # its first chunk in hand (decoding, or in the model)
        os.kill(victim, signal.SIGKILL)
        out = driver.stdout.read()  # Ray's own word of the death comes first
        assert driver.wait(timeout=300) == 0
        line = next((ln for ln in out.splitlines() if ln.startswith("RESULTS")), out)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert line.startswith("RESULTS"), line
    got = json.loads(line.split(" ", 1)[1])
    assert victim not in got["pids"] and len(got["pids"]) == 2  # replaced
    assert got["sent"] > 0  # the blind machine analysed files from the bytes it was sent
    alone = list(Engine(EngineConfig()).predict_paths(files))
    assert [r["path"] for r in got["results"]] == [str(f) for f in files]
    for r, ref in zip(got["results"], alone):
        if isinstance(ref, Prediction):
            assert max(abs(r["raw"][t] - ref.raw[t]) for t in ref.raw) < 1e-5 and r["windows"] == ref.windows
        else:
            assert r.get("code") == ref.code
