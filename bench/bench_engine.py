#!/usr/bin/env python3
"""Engine benchmark on real music, against the original musicnn TF1 code in the same run.

    ../shared/corpus/build.sh /tmp/corpus                   # real, freely licensed music
    pip download --no-deps musicnn==0.1.0 -d /tmp/mnn        # the baseline's code and weights
    pip install --no-deps tf_keras                           # what its TF1 layers need
    python bench/bench_engine.py /tmp/corpus --musicnn-wheel /tmp/mnn/musicnn-0.1.0-py3-none-any.whl

Prints per-stage seconds per minute of audio (decode, features, model), end-to-end tracks per
minute in full and budget modes, the baseline and our speed-up over it, and the top-1 genre
agreement of each budget against full mode. Timings are wall-clock on this machine; run it on
a quiet machine and compare only numbers from the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from tagger.analysis.config import EngineConfig
from tagger.analysis.decode import decode
from tagger.analysis.engine import Engine, Prediction
from tagger.analysis.features import SAMPLE_RATE, cut_windows, log_mel, repeat_pad, window_starts

BASELINE_CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
sys.path.insert(0, sys.argv[1])
from musicnn.extractor import extractor
out = []
for path in sys.argv[3:]:
    t = time.perf_counter()
    taggram, tags = extractor(path, model=sys.argv[2], extract_features=False)
    out.append({"path": path, "seconds": time.perf_counter() - t, "windows": len(taggram)})
print("JSON" + json.dumps(out))
"""


def pick_tracks(corpus: Path, n: int) -> list[Path]:
    """One full-length original per package (round robin), formats librosa can read too."""
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
                picked.append(corpus / rs.pop(len(rs) // 2)["lib_path"])
    return picked


def timed(fn, *a, **kw):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    r = fn(*a, **kw)
    return r, time.perf_counter() - t


def top1(p: Prediction) -> str:
    return max(p.genre_scores.items(), key=lambda kv: kv[1])[0]


def run_baseline(wheel: Path, files: list[Path], network: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(tmp)
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", BASELINE_CHILD, tmp, network, *map(str, files)],
                             capture_output=True, text=True, env=env, check=True)
        wall = time.perf_counter() - t
    rows = json.loads(out.stdout.split("JSON", 1)[1])
    return wall, sum(r["windows"] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--tracks", type=int, default=25)
    ap.add_argument("--budgets", default="4,8,16")
    ap.add_argument("--musicnn-wheel", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()

    files = pick_tracks(args.corpus, args.tracks)
    budgets = [int(b) for b in args.budgets.split(",")]
    rows: list[tuple[str, str, str, str]] = []
    report: dict[str, object] = {"tracks": len(files)}

    # Per-stage costs, one file at a time (no overlap), full mode.
    full_cfg = EngineConfig(budget=None, device="cpu")
    engine = Engine(full_cfg)
    t_dec = t_feat = 0.0
    windows = []
    audio_s = 0.0
    for f in files:
        audio, dt = timed(decode, f)
        t_dec += dt
        audio_s += len(audio) / SAMPLE_RATE
        w, dt = timed(lambda a: cut_windows(fr := log_mel(repeat_pad(a)), window_starts(len(fr))), audio)
        t_feat += dt
        windows.append(w)
    all_w = np.concatenate(windows)
    engine.scorer.score(all_w[:engine.scorer.batch_size])  # trace once, outside the timing
    _, t_model = timed(engine.scorer.score, all_w)
    minutes = audio_s / 60
    report.update(audio_minutes=minutes, windows=len(all_w))
    for name, t in (("decode (ffmpeg+soxr)", t_dec), ("log-mel + windows", t_feat),
                    (f"model ({engine.model_version}, batch {engine.scorer.batch_size})", t_model)):
        rows.append(("stage, full mode", name, f"{t / minutes:.3f} s/audio-min", f"{t:.1f} s"))
        report[f"stage:{name}"] = t / minutes

    # End to end.
    full, t_full = timed(lambda: list(engine.predict_paths(files)))
    ok_full = {p.path: p for p in full if isinstance(p, Prediction)}
    e2e = {"full": t_full}
    rows.append(("end to end", "full (every window)", f"{len(files) / t_full * 60:.1f} tracks/min",
                 f"{t_full / minutes:.3f} s/audio-min"))
    agreement = {}
    for b in budgets:
        eng = Engine(EngineConfig(budget=b, device="cpu"))
        res, t = timed(lambda eng=eng: list(eng.predict_paths(files)))
        e2e[f"budget {b}"] = t
        same = [top1(r) == top1(ok_full[r.path]) for r in res
                if isinstance(r, Prediction) and r.path in ok_full]
        agreement[b] = sum(same) / max(1, len(same))
        rows.append(("end to end", f"budget {b} windows", f"{len(files) / t * 60:.1f} tracks/min",
                     f"{t / minutes:.3f} s/audio-min, top-1 = full on {agreement[b]:.0%}"))
    report.update(e2e=e2e, agreement=agreement)

    if args.musicnn_wheel:
        base = {}
        for net in ("MSD_musicnn", "MTT_musicnn"):
            wall, n = run_baseline(args.musicnn_wheel, files, net)
            base[net] = wall
            rows.append(("baseline", f"musicnn TF1 {net}", f"{len(files) / wall * 60:.1f} tracks/min",
                         f"{wall / minutes:.3f} s/audio-min ({n} windows)"))
        both = sum(base.values())
        rows.append(("baseline", "musicnn TF1, both networks (what we compute)",
                     f"{len(files) / both * 60:.1f} tracks/min", f"{both / minutes:.3f} s/audio-min"))
        for mode, t in e2e.items():
            rows.append(("speed-up", f"ours {mode} vs baseline",
                         f"{both / t:.2f}x (both networks)", f"{base['MSD_musicnn'] / t:.2f}x (MSD alone)"))
        report["baseline"] = base

    width = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\n{len(files)} tracks, {minutes:.1f} audio-minutes, {len(all_w)} windows; "
          f"{os.cpu_count()} CPUs")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
