#!/usr/bin/env python3
"""The GPU path, checked and measured on a machine with an NVIDIA GPU (Keras on JAX).

Two steps, because the GPU machine has no network and no OpenVINO:

    # here (CPU): real tracks made small, and the CPU path's answers on them
    ../shared/corpus/build.sh /tmp/corpus
    python bench/gpu_check.py prepare /tmp/corpus .gpu --ffmpeg "$(which ffmpeg)"
    # there (GPU): the tests, then the numbers; one table at the end
    bash bench/gpu_check.sh .gpu

``prepare`` picks one real track per corpus package (round robin), stores each as a small
mono Opus file (the "seeds"), and records what the CPU path (OpenVINO) answers on them with
a fixed budget (float32 and the default precision) and with the defaults, plus its scores and
features on the recorded musicnn windows and mixtures of them. ``--ffmpeg`` puts an
xz-compressed static ffmpeg beside them for a machine without one.

``run`` (what ``gpu_check.sh`` calls) then, on the GPU machine:

1. runs ``tests/test_gpu.py`` and ``tests/test_model.py`` on the GPU;
2. compares the GPU's scores and features on the same windows with the CPU path's, in each GPU
   precision, and times the model alone (windows/s) for batches 64-1024 and each network;
3. builds a library from the seeds (each cut at several offsets into FLAC, MP3, Ogg, AAC and
   Opus at 44.1/48 kHz stereo, as people keep music), times how fast this machine's cores
   decode it alone, then times ``predict`` and ``scan`` end to end as a person types them;
4. prints one table (and writes it, with every number, to ``$OUT`` when set).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_engine import pick_tracks

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "data" / "musicnn_reference.npz"
SEED_SECONDS = 150  # seeds are cut here: 24 kb/s mono keeps 30 of them near 13 MB
#: (extension, ffmpeg arguments): what the library is built in, at people's usual rates.
LIBRARY_FORMATS = [
    ("flac", ["-ar", "44100", "-ac", "2", "-c:a", "flac"]),
    ("mp3", ["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-q:a", "2"]),
    ("ogg", ["-ar", "44100", "-ac", "2", "-c:a", "libvorbis", "-q:a", "5"]),
    ("m4a", ["-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "192k"]),
    ("opus", ["-ar", "48000", "-ac", "2", "-c:a", "libopus", "-b:a", "128k"]),
]


def run_cli(args: list[str], env: dict[str, str] | None = None, timeout: float = 600
            ) -> tuple[float, subprocess.CompletedProcess[str]]:
    """``genre-tagger ARGS`` in a fresh process, as a person types it: its wall clock."""
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=timeout)
    return time.perf_counter() - t, out


def fresh_env(**extra: str) -> dict[str, str]:
    """No user config or cache: the defaults as a new user has them."""
    home = tempfile.mkdtemp(prefix="gpu-check-home-")
    return dict(os.environ, XDG_CONFIG_HOME=home, XDG_STATE_HOME=home, HOME=home, **extra)


def mixed_windows() -> Any:
    """The recorded musicnn windows and 30 mixtures of them (as tests/test_gpu.py)."""
    import numpy as np

    with np.load(REFERENCE, allow_pickle=False) as f:
        inputs = f["inputs"]
    mix = np.random.default_rng(5).dirichlet(np.ones(len(inputs)), size=30).astype(np.float32)
    return np.concatenate([inputs, np.einsum("ki,ift->kft", mix, inputs)])


def predict_json(files: list[Path], *args: str, env: dict[str, str]) -> dict[str, Any]:
    wall, out = run_cli(["predict", "--json", *args, *map(str, files)], env)
    if out.returncode not in (0, 1):
        raise SystemExit(f"predict {' '.join(args)}: exit {out.returncode}\n{out.stderr[-3000:]}")
    rows = json.loads(out.stdout)
    return {"wall": wall, "rows": {Path(r["path"]).name: r for r in rows if r["ok"]},
            "failed": [r for r in rows if not r["ok"]]}


# --- prepare (on a CPU machine with OpenVINO) ------------------------------------------------


def prepare(corpus: Path, out: Path, n: int, ffmpeg: Path | None) -> None:
    import numpy as np

    from tagger.analysis.model.runner import OpenVinoScorer

    seeds = out / "seeds"
    seeds.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(pick_tracks(corpus, n)):  # one per package, in turn
        dst = seeds / f"{i:02d}-{src.parent.name}.opus"
        if not dst.exists():
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-t",
                            str(SEED_SECONDS), "-map", "0:a:0", "-map_metadata", "-1", "-ac", "1",
                            "-c:a", "libopus", "-b:a", "24k", str(dst)], check=True)
    files = sorted(seeds.glob("*.opus"))
    env = fresh_env(CUDA_VISIBLE_DEVICES="-1")
    cpu: dict[str, Any] = {}
    for name, args in [("fixed_float32", ["--budget", "12", "--precision", "float32"]),
                       ("fixed_auto", ["--budget", "12"]), ("defaults", [])]:
        got = predict_json(files, "--device", "cpu", *args, env=env)
        cpu[name] = {k: {"genre_scores": r["genre_scores"], "windows": r["windows"]}
                     for k, r in got["rows"].items()}
        cpu[name + "_wall"] = got["wall"]
        print(f"cpu {name}: {len(got['rows'])} files in {got['wall']:.1f} s", flush=True)
    windows = mixed_windows()
    arrays: dict[str, Any] = {}
    for precision in ("float32", "auto"):
        scorer = OpenVinoScorer("musicnn", features=True, precision=precision)  # type: ignore[arg-type]
        arrays[precision] = scorer.score_with_features(windows)
        cpu[f"runtime_{precision}"] = scorer.runtime
    np.savez_compressed(out / "cpu_windows.npz", **arrays)
    (out / "cpu.json").write_text(json.dumps(cpu))
    if ffmpeg:
        with open(ffmpeg, "rb") as src, lzma.open(out / "ffmpeg.xz", "wb", preset=6) as dst:
            shutil.copyfileobj(src, dst)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"prepared {len(files)} seeds in {out} ({size / 2**20:.1f} MiB)")


# --- run (on the GPU machine) -----------------------------------------------------------------


def ensure_ffmpeg(data: Path) -> None:
    if shutil.which("ffmpeg"):
        return
    bindir = Path(tempfile.mkdtemp(prefix="gpu-check-bin-"))
    with lzma.open(data / "ffmpeg.xz", "rb") as src, open(bindir / "ffmpeg", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (bindir / "ffmpeg").chmod(0o755)
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"


def section(title: str) -> None:
    print(f"\n== {title} ({time.strftime('%H:%M:%S')})", flush=True)


def window_rate(scorer: Any, windows: Any, seconds: float) -> float:
    """Windows per second through ``score_with_features`` (host to GPU and back included)."""
    import numpy as np

    batch = np.resize(windows, (scorer.batch_size, *windows.shape[1:]))  # repeats to fill it
    scorer.score_with_features(batch)  # compile
    scorer.score_with_features(batch)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        scorer.score_with_features(batch)
        n += len(batch)
    return n / (time.perf_counter() - t0)


def workspace_gib(scorer: Any) -> float | None:
    """GPU memory one batch needs beyond the weights (XLA's own count for the compiled call)."""
    import jax

    try:
        shape = jax.ShapeDtypeStruct((scorer.batch_size, *scorer._buf.shape[1:]), "float32")
        with jax.default_matmul_precision(scorer.runtime.split()[-1]):
            compiled = jax.jit(lambda v: scorer.model(v, training=False)).lower(shape).compile()
        return float(compiled.memory_analysis().temp_size_in_bytes) / 2**30
    except Exception as e:  # a backend without the analysis: the table says '?'
        print(f"   (no memory analysis: {type(e).__name__}: {e})", flush=True)
        return None


def model_checks(data: Path, results: dict[str, Any], device: str, quick: bool) -> None:
    import jax
    import numpy as np

    from tagger.analysis.model.runner import KerasScorer

    windows = mixed_windows()
    seconds = 0.2 if quick else 1.0
    with np.load(data / "cpu_windows.npz") as f:
        cpu = {k: f[k] for k in f.files}
    ref32 = cpu["float32"]
    section("the model on the GPU against the CPU path (OpenVINO float32) on 70 windows, batch 256")
    rows = results["precision"] = []
    for layout, precision in [("banded", "float32"), ("banded", "auto"), ("banded", "bfloat16"),
                              ("direct", "float32"), ("direct", "auto")]:
        scorer = KerasScorer("musicnn", device, features=True, precision=precision,  # type: ignore[arg-type]
                             layout=layout)  # type: ignore[arg-type]
        got = scorer.score_with_features(windows)
        s, r = got[:, :100], ref32[:, :100]
        feat_err = float(np.abs(got[:, 100:] - ref32[:, 100:]).max() / np.abs(ref32[:, 100:]).max())
        row = {"runtime": f"{scorer.runtime}, {layout}", "window_max": float(np.abs(s - r).max()),
               "song_max": float(np.abs(s.mean(0) - r.mean(0)).max()),
               "argmax_same": float((s.argmax(1) == r.argmax(1)).mean()), "features_rel": feat_err,
               "windows_per_s_256": window_rate(scorer, windows, seconds),
               "workspace_gib": workspace_gib(scorer) if precision == "auto" else None}
        rows.append(row)
        print(f"{row['runtime']:<36} window max {row['window_max']:.5f}  song max "
              f"{row['song_max']:.5f}  top tag same {row['argmax_same']:.2f}  features "
              f"{row['features_rel']:.1e}  {row['windows_per_s_256']:,.0f} windows/s  "
              f"{row['workspace_gib']} GiB", flush=True)
        del scorer
    auto = cpu["auto"][:, :100]
    rows.append({"runtime": "cpu default: " + json.loads((data / "cpu.json").read_text())[
        "runtime_auto"], "window_max": float(np.abs(auto - ref32[:, :100]).max()),
        "song_max": float(np.abs(auto.mean(0) - ref32[:, :100].mean(0)).max()),
        "argmax_same": float((auto.argmax(1) == ref32[:, :100].argmax(1)).mean())})
    results["device"] = str(jax.devices()[0])
    save(results)
    section("the model alone: windows/s by batch and network (the defaults, with features)")
    speed = results["speed"] = []
    plan = [("musicnn", (64, 128, 256, 512, 1024)), ("musicnn-msd", (256,)),
            ("musicnn-mtt", (256,))]
    for model, batches in [("musicnn", (16,))] if quick else plan:
        for batch in batches:
            scorer = KerasScorer(model, device, batch_size=batch, features=True)
            rate = window_rate(scorer, windows, seconds)
            gib = workspace_gib(scorer) if model == "musicnn" and batch in (256, 1024) else None
            speed.append({"model": model, "batch": batch, "windows_per_s": rate,
                          "workspace_gib": gib})
            print(f"{model:<12} batch {batch:>4}: {rate:>9,.0f} windows/s  {gib} GiB", flush=True)
            del scorer
    save(results)


def save(results: dict[str, Any]) -> None:
    """What is measured so far, into $OUT (a run cut short still tells what it saw)."""
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(results, indent=1))


def build_library(seeds: list[Path], dest: Path, variants: int) -> list[Path]:
    """Each seed cut at ``variants`` offsets, each cut in the next format of LIBRARY_FORMATS:
    distinct audio (no two files share an identity), the formats people keep."""
    jobs = []
    for i, seed in enumerate(seeds):
        for k in range(variants):
            ext, args = LIBRARY_FORMATS[(i + k) % len(LIBRARY_FORMATS)]
            out = dest / f"{seed.stem}-{k:02d}.{ext}"
            jobs.append(["ffmpeg", "-nostdin", "-v", "error", "-y", "-ss", str(3 * k), "-i",
                         str(seed), *args, str(out)])
    dest.mkdir(parents=True, exist_ok=True)
    with cf.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(lambda cmd: subprocess.run(cmd, check=True), jobs))
    return sorted(p for p in dest.iterdir() if p.is_file())


def decode_rate(files: list[Path], jobs: int, one_blas_thread: bool) -> float:
    """Tracks/s through decoding and log-mel alone (each file's first stage of the adaptive
    budget: the windows most tracks need), with ``jobs`` decoding threads, with BLAS's own
    threads or with one (what the engine runs with)."""
    from threadpoolctl import threadpool_limits

    from tagger.analysis.config import EngineConfig
    from tagger.analysis.decode import SegmentReader
    from tagger.analysis.extract import extract_windows

    config = EngineConfig(jobs=jobs)
    reader = SegmentReader()
    reader.warm(jobs)
    limit = threadpool_limits(1, "blas") if one_blas_thread else None
    t = time.perf_counter()
    with cf.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(lambda p: extract_windows(str(p), config, reader), files))
    wall = time.perf_counter() - t
    if limit:
        limit.restore_original_limits()
    reader.close()
    return len(files) / wall


def agreement(data: Path, results: dict[str, Any], device: str, quick: bool) -> None:
    cpu = json.loads((data / "cpu.json").read_text())
    seeds = sorted((data / "seeds").glob("*.opus"))[:3 if quick else None]
    env = fresh_env()
    section(f"predict on the GPU against the CPU path on {len(seeds)} real tracks")
    agree = results["agreement"] = []
    for name, args in [("fixed_auto", ["--budget", "12"]), ("defaults", []),
                       ("fixed_float32", ["--budget", "12", "--precision", "float32"])]:
        got = predict_json(seeds, "--device", device, *args, env=env)
        theirs = cpu[name]
        common = sorted(set(got["rows"]) & set(theirs))
        top_same = sum(max(got["rows"][k]["genre_scores"].items(), key=lambda kv: kv[1])[0]
                       == max(theirs[k]["genre_scores"].items(), key=lambda kv: kv[1])[0]
                       for k in common)
        diff = max(abs(got["rows"][k]["genre_scores"][g] - v) for k in common
                   for g, v in theirs[k]["genre_scores"].items())
        row = {"run": name, "files": len(common), "top_same": top_same, "score_max_diff": diff,
               "gpu_wall": got["wall"], "cpu_wall": cpu[name + "_wall"],
               "gpu_windows": sum(got["rows"][k]["windows"] for k in common),
               "cpu_windows": sum(theirs[k]["windows"] for k in common)}
        agree.append(row)
        print(f"{name:<14} top genre same {top_same}/{len(common)}, genre scores differ by at "
              f"most {diff:.4f}; windows GPU {row['gpu_windows']} / CPU {row['cpu_windows']}; "
              f"wall GPU {got['wall']:.1f} s, CPU here-at-prepare {row['cpu_wall']:.1f} s",
              flush=True)
        save(results)


def library_runs(data: Path, results: dict[str, Any], variants: int, device: str,
                 quick: bool) -> None:
    seeds = sorted((data / "seeds").glob("*.opus"))[:3 if quick else None]
    work = Path(tempfile.mkdtemp(prefix="gpu-check-lib-"))
    section(f"a library from the seeds ({variants} cuts each, 5 formats)")
    t = time.perf_counter()
    lib = build_library(seeds, work / "library", variants)
    size = sum(p.stat().st_size for p in lib)
    print(f"{len(lib)} files, {size / 2**20:.0f} MiB, built in {time.perf_counter() - t:.0f} s",
          flush=True)
    results["library"] = {"files": len(lib), "mib": size / 2**20}
    cpus = os.cpu_count() or 1
    rows = results["end_to_end"] = []
    section("decoding alone (first stage: 6 windows a track)")
    for jobs in sorted({4, cpus}):
        for one in (False, True):
            rate = decode_rate(lib, jobs, one)
            what = f"decode + log-mel alone, {jobs} threads, {'one BLAS thread' if one else 'BLAS threads'}"
            rows.append({"what": what, "tracks_per_min": 60 * rate})
            print(f"{what}: {60 * rate:,.0f} tracks/min", flush=True)
    save(results)
    section("end to end, fresh processes (the defaults)")
    small = lib[:max(3, len(lib) // 10)]
    walls = {}
    for label, files in [("few", small), ("all", lib)]:
        got = predict_json(files, "--device", device, env=fresh_env())
        walls[label] = (len(files), got["wall"])
        windows = sum(r["windows"] for r in got["rows"].values())
        rows.append({"what": f"predict --device {device}, {len(files)} files", "wall": got["wall"],
                     "ok": len(got["rows"]), "failed": len(got["failed"]), "windows": windows,
                     "tracks_per_min": 60 * len(got["rows"]) / got["wall"]})
        print(f"predict, {len(files)} files: {len(got['rows'])} ok, {len(got['failed'])} failed, "
              f"{windows} windows, {got['wall']:.1f} s = {rows[-1]['tracks_per_min']:,.0f} "
              f"tracks/min", flush=True)
    (n1, w1), (n2, w2) = walls["few"], walls["all"]
    steady = 60 * (n2 - n1) / max(w2 - w1, 1e-9)
    rows.append({"what": f"predict --device {device}, once started (the {n2 - n1} files more)",
                 "tracks_per_min": steady, "startup_s": w1 - n1 * 60 / steady})
    print(f"once started: {steady:,.0f} tracks/min; start-up about {rows[-1]['startup_s']:.1f} s",
          flush=True)
    save(results)
    report = work / "scan.json"
    wall, out = run_cli(["scan", "--device", device, "--json", str(report),
                         str(work / "library")], fresh_env())
    counts = json.loads(report.read_text()).get("counts", {}) if report.exists() else {}
    rows.append({"what": f"scan --device {device} (writes the tags; -j {cpus})", "wall": wall,
                 "rc": out.returncode, "tagged": counts.get("tagged"),
                 "tracks_per_min": 60 * len(lib) / wall})
    print(f"scan: exit {out.returncode}, {counts.get('tagged')} tagged, {wall:.1f} s = "
          f"{rows[-1]['tracks_per_min']:,.0f} tracks/min\n{out.stderr[-600:]}", flush=True)
    save(results)
    shutil.rmtree(work, ignore_errors=True)


def gib(value: float | None) -> str:
    return "? GiB" if value is None else f"{value:.1f} GiB a batch"


def table(results: dict[str, Any]) -> str:
    lines = [f"GPU check on {results.get('device')}, {os.cpu_count()} CPUs "
             f"({results.get('library', {}).get('files', '?')} library files)", "",
             "| what | figure |", "|---|---|"]
    for row in results.get("precision", []):
        if "windows_per_s_256" in row:
            lines.append(f"| {row['runtime']}, batch 256 | {row['windows_per_s_256']:,.0f} windows/s,"
                         f" {gib(row.get('workspace_gib'))}; vs CPU float32: window "
                         f"{row['window_max']:.4f}, song {row['song_max']:.4f}, features "
                         f"{row['features_rel']:.0e} (rel.) |")
        else:
            lines.append(f"| {row['runtime']} | vs CPU float32: window {row['window_max']:.4f}, "
                         f"song {row['song_max']:.4f} |")
    lines += [f"| {r['model']}, batch {r['batch']} | {r['windows_per_s']:,.0f} windows/s"
              + (f", {gib(r['workspace_gib'])}" if r.get("workspace_gib") else "") + " |"
              for r in results.get("speed", [])]
    lines += [f"| predict {r['run']}: GPU vs CPU, {r['files']} tracks | top genre same "
              f"{r['top_same']}/{r['files']}, scores within {r['score_max_diff']:.4f} |"
              for r in results.get("agreement", [])]
    lines += [f"| {r['what']} | {r['tracks_per_min']:,.0f} tracks/min"
              + (f" ({r['wall']:.1f} s)" if "wall" in r else "") + " |"
              for r in results.get("end_to_end", [])]
    return "\n".join(lines)


def run(data: Path, variants: int, skip_tests: bool, device: str, quick: bool) -> int:
    ensure_ffmpeg(data)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    results: dict[str, Any] = {}
    rc = 0
    if not skip_tests:
        section("tests on the GPU: tests/test_gpu.py tests/test_model.py")
        env = dict(os.environ, JAX_DEFAULT_MATMUL_PRECISION="float32")
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "-o", "addopts=", "tests/test_gpu.py", "tests/test_model.py"],
                               cwd=ROOT, env=env, timeout=400)
        rc = tests.returncode
        results["tests_rc"] = rc
    stages = [("model", lambda: model_checks(data, results, device, quick)),
              ("library", lambda: library_runs(data, results, variants, device, quick)),
              ("agreement", lambda: agreement(data, results, device, quick))]
    for name, stage in stages:
        try:
            stage()
        except Exception as e:  # report what was measured before it, and what broke
            print(f"!! {name} failed: {type(e).__name__}: {e}", flush=True)
            results[f"{name}_error"] = repr(e)
            rc = rc or 1
    text = table(results)
    section("table")
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.md").write_text(text + "\n")
    save(results)
    return rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="on a CPU machine: seeds and the CPU path's answers")
    p.add_argument("corpus", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--ffmpeg", type=Path, default=None, help="a static ffmpeg to carry, xz'd")
    r = sub.add_parser("run", help="on the GPU machine")
    r.add_argument("data", type=Path)
    r.add_argument("--variants", type=int, default=5, help="library files per seed")
    r.add_argument("--skip-tests", action="store_true")
    r.add_argument("--device", default="gpu", help="cpu: try this script on a CPU (with --quick)")
    r.add_argument("--quick", action="store_true", help="3 seeds, one batch size, short timings")
    a = ap.parse_args()
    if a.step == "prepare":
        prepare(a.corpus, a.out, a.seeds, a.ffmpeg)
    else:
        sys.exit(run(a.data, a.variants, a.skip_tests, a.device, a.quick))


if __name__ == "__main__":
    main()
