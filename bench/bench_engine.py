#!/usr/bin/env python3
"""End to end as a person types it, against the original musicnn, on the same real tracks.

    ../shared/corpus/build.sh /tmp/corpus                   # real, freely licensed music
    pip download --no-deps musicnn==0.1.0 -d /tmp/mnn        # the baseline's code and weights
    pip install --no-deps tf_keras                           # what its TF1 layers need
    python bench/bench_engine.py /tmp/corpus --musicnn-wheel /tmp/mnn/musicnn-0.1.0-py3-none-any.whl

Every row is the wall clock of a fresh process, start-up included: ``genre-tagger predict
--json`` on all the tracks with the defaults, with ``--budget 24`` (the old default), with
``--budget all`` (every window: the reference for the top genre) in the default precision and
in float32, and
musicnn 0.1.0's own ``extractor`` for each of its two networks (what our default computes).
Then ``predict`` on one file, and the model alone per window in each runtime. Timings are
wall-clock on this machine: run it on a quiet machine and compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

BASELINE_CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
sys.path.insert(0, sys.argv[1])
from musicnn.extractor import extractor
out = []
for path in sys.argv[3:]:
    taggram, tags = extractor(path, model=sys.argv[2], extract_features=False)
    out.append(len(taggram))
print("JSON" + json.dumps(out))
"""

MODEL_CHILD = r"""
import json, sys, time
import numpy as np
from tagger.analysis.model.runner import KerasScorer, OpenVinoScorer
name = sys.argv[1]
if name == "keras":
    scorer = KerasScorer("musicnn", "cpu", features=True)
else:
    scorer = OpenVinoScorer("musicnn", features=True, precision=name)
x = np.random.default_rng(0).uniform(0, 4, (160, 187, 96)).astype(np.float32)
scorer.score_with_features(x[:scorer.batch_size])
t = time.perf_counter()
scorer.score_with_features(x)
print("JSON" + json.dumps({"runtime": scorer.runtime,
                           "ms": 1000 * (time.perf_counter() - t) / len(x)}))
"""


def pick_tracks(corpus: Path, n: int, track_set: int = 0) -> list[Path]:
    """One full-length original per package (round robin), formats librosa can read too.

    ``track_set`` 0 takes each package's middle track first; another number other tracks (of
    packages with several), to check a result on music it was not tuned on."""
    with open(corpus / "manifest.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["kind"] == "original"
                and r["variant"] in ("ogg", "opus", "mp3", "flac") and r["ffmpeg_readable"] == "1"]
    by_pkg: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_pkg.setdefault(r["package"], []).append(r)
    picked: list[Path] = []
    while len(picked) < n and any(by_pkg.values()):
        for rs in by_pkg.values():
            if rs and len(picked) < n:
                picked.append(corpus / rs.pop((len(rs) // 2 + track_set) % len(rs))["lib_path"])
    return picked


def env() -> dict[str, str]:
    """No user config, no GPU: the defaults as a new user on this machine has them."""
    home = tempfile.mkdtemp(prefix="bench-home-")
    return dict(os.environ, XDG_CONFIG_HOME=home, XDG_STATE_HOME=home, TF_CPP_MIN_LOG_LEVEL="3")


def predict(files: list[Path], *args: str) -> tuple[float, list[dict[str, Any]]]:
    cmd = [sys.executable, "-m", "tagger", "predict", "--json", *args, *map(str, files)]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT)
    wall = time.perf_counter() - t
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:6])} ...: exit {out.returncode}\n{out.stderr}")
    return wall, [r for r in json.loads(out.stdout) if r["ok"]]


def top(r: dict[str, Any]) -> str:
    return max(r["genre_scores"].items(), key=lambda kv: kv[1])[0]


def baseline(wheel: Path, files: list[Path], network: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        e = dict(env(), TF_USE_LEGACY_KERAS="1", CUDA_VISIBLE_DEVICES="-1")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", BASELINE_CHILD, tmp, network,
                              *map(str, files)], capture_output=True, text=True, env=e, check=True)
        wall = time.perf_counter() - t
    return wall, sum(json.loads(out.stdout.split("JSON", 1)[1]))


def model_ms(name: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", MODEL_CHILD, name], capture_output=True, text=True,
                         env=env(), cwd=ROOT, check=True)
    got = json.loads(out.stdout.split("JSON", 1)[1])
    return got["runtime"], got["ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--tracks", type=int, default=40)
    ap.add_argument("--track-set", type=int, default=0,
                    help="0: the tracks the README's table used; another number: other tracks")
    ap.add_argument("--musicnn-wheel", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    files = pick_tracks(args.corpus, args.tracks, args.track_set)
    report: dict[str, Any] = {"tracks": len(files), "cpus": os.cpu_count()}
    runs: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    for name, extra in (("defaults", ()), ("--budget 24", ("--budget", "24")),
                        ("--budget all", ("--budget", "all")),
                        ("--budget all --precision float32",
                         ("--budget", "all", "--precision", "float32"))):
        runs[name] = predict(files, *extra)
        print(f"{name}: {runs[name][0]:.1f} s", file=sys.stderr)
    ref = {r["path"]: r for r in runs["--budget all"][1]}
    minutes = sum(r["seconds"] for r in ref.values()) / 60
    report["audio_minutes"] = minutes

    base: dict[str, float] = {}
    if args.musicnn_wheel:
        for net in ("MSD_musicnn", "MTT_musicnn"):
            base[net], n = baseline(args.musicnn_wheel, files, net)
            print(f"musicnn {net}: {base[net]:.1f} s, {n} windows", file=sys.stderr)
    both = sum(base.values())

    rows = [("command (a fresh process each, start-up included)", "wall", "tracks/min",
             "windows/track", "top genre = all", "vs musicnn")]
    for name, (wall, res) in runs.items():
        same = [top(r) == top(ref[r["path"]]) for r in res if r["path"] in ref]
        agree = sum(same) / max(1, len(same))
        rows.append((f"genre-tagger predict {name}", f"{wall:.1f} s",
                     f"{len(files) / wall * 60:.0f}",
                     f"{statistics.mean(r['windows'] for r in res):.1f}",
                     f"{sum(same)}/{len(same)} ({agree:.0%})",
                     f"{both / wall:.1f}x" if both else "-"))
        report[name] = {"wall": wall, "agreement": agree,
                        "windows": statistics.mean(r["windows"] for r in res)}
    for net, wall in base.items():
        rows.append((f"musicnn 0.1.0 extractor, {net}", f"{wall:.1f} s",
                     f"{len(files) / wall * 60:.0f}", "every", "", ""))
    if both:
        rows.append(("musicnn 0.1.0, both networks (what we compute)", f"{both:.1f} s",
                     f"{len(files) / both * 60:.0f}", "every", "", "1.0x"))
    report["musicnn"] = base

    # The default precision against float32, every window: the song scores tags come from.
    f32 = {r["path"]: r for r in runs["--budget all --precision float32"][1]}
    diffs = [max(abs(r["raw"][k] - f32[r["path"]]["raw"][k]) for k in r["raw"])
             for r in ref.values() if r["path"] in f32]
    same = sum(top(r) == top(f32[r["path"]]) for r in ref.values() if r["path"] in f32)
    report["bf16_vs_f32"] = {"max_raw_diff": max(diffs), "top_agree": same / len(diffs)}

    one = []
    for f in files[:5]:
        one.append(predict([f])[0])
    report["one_file"] = one
    models = [model_ms(n) for n in ("int8", "bfloat16", "float32", "keras")]
    report["model_ms"] = dict(models)

    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n{len(files)} real tracks, {minutes:.1f} audio-minutes, {os.cpu_count()} CPUs")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)))
    print(f"\ndefault precision vs float32 (every window): song scores differ by at most "
          f"{max(diffs):.4f}; top genre the same on {same}/{len(diffs)}")
    print(f"predict on one file (5 files, each a fresh process): median "
          f"{statistics.median(one):.2f} s, max {max(one):.2f} s")
    print("model alone, per window (both networks, batch 16): "
          + "; ".join(f"{rt} {ms:.1f} ms" for rt, ms in models))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
