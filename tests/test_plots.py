"""Pictures: ``show --plot`` (from the cache, else by analysing), ``stats --plot``, and what the
commands say without matplotlib. Each PNG is checked whole (chunks, CRCs) and by the series it
records drawing."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ffmpeg_encode, music_like
from pngs import read_png, series
from test_cli import run_cli

from tagger.plots import HINT


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three 24-s tracks (8 windows each), scanned into a cache."""
    work = tmp_path_factory.mktemp("plots")
    (work / "music").mkdir()
    for i in range(3):
        ffmpeg_encode(music_like(24.5, seed=10 + i), 44_100, work / "music" / f"t{i}.flac",
                      ["-c:a", "flac"])
    db = work / "cache.sqlite"
    r = run_cli("scan", str(work / "music"), "--db", f"sqlite:///{db}", "--min-confidence", "0.01")
    assert r.returncode == 0, r.stderr
    return work, db


def cached(db: Path, path: Path) -> tuple[list[str], dict[str, float]]:
    con = sqlite3.connect(db)
    try:
        chosen, scores = con.execute("SELECT genres_chosen, genre_scores FROM tracks WHERE path = ?",
                                     (str(path),)).fetchone()
    finally:
        con.close()
    return json.loads(chosen), json.loads(scores)


def test_show_plot_from_the_cache(scanned: tuple[Path, Path], tmp_path: Path) -> None:
    work, db = scanned
    config = tmp_path / "config.toml"
    config.write_text("min_confidence = 0.01\n")
    track = work / "music" / "t0.flac"
    out = tmp_path / "t0.png"
    r = run_cli("show", str(track), "--plot", str(out), "--db", f"sqlite:///{db}", "--config", str(config))
    assert r.returncode == 0, r.stderr
    # The adaptive budget took 6 to 8 of its 8 windows, in its own order: drawn in time order.
    n = int(re.search(r"(\d+) windows, scores from the cache", r.stdout).group(1))  # type: ignore[union-attr]
    assert 6 <= n <= 8
    drawn = series(out)
    chosen, scores = cached(db, track)
    assert drawn["kind"] == "timeline" and drawn["chosen"] == chosen and drawn["threshold"] == 0.01
    assert len(drawn["times"]) == n and drawn["times"] == sorted(drawn["times"])
    assert 0 < drawn["times"][0] < 3 and 20 < drawn["times"][-1] < 24.5  # window centres, seconds
    assert list(drawn["series"])[:len(chosen)] == chosen and len(drawn["series"]) == 6
    for genre, ys in drawn["series"].items():
        assert len(ys) == n and all(0 <= y <= 1 for y in ys)
        # The song's score is a mean over these windows (per tag): never above the best one.
        assert scores[genre] <= max(ys) + 0.01, genre


def test_show_plot_with_a_budget_draws_the_windows_analysed_now(scanned: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    """The cache kept the adaptive budget's windows; ``--budget`` analyses the track now and
    draws what it asks for (every window of the 24-s track: 8; or 3 spread evenly), and the
    cache is left as it was."""
    work, db = scanned
    track = work / "music" / "t0.flac"
    before = cached(db, track)
    for budget, want in (("all", 8), ("3", 3)):
        out = tmp_path / f"{budget}.png"
        r = run_cli("show", str(track), "--plot", str(out), "--budget", budget,
                    "--db", f"sqlite:///{db}")
        assert r.returncode == 0, r.stderr
        assert f"{want} windows, scores just analysed" in r.stdout, r.stdout
        drawn = series(out)
        assert len(drawn["times"]) == want and drawn["times"] == sorted(drawn["times"])
    assert cached(db, track) == before
    wrong = run_cli("show", str(track), "--budget", "all", "--db", f"sqlite:///{db}")
    assert wrong.returncode == 2 and "--budget is for --plot" in wrong.stderr


def test_show_plot_analyses_a_file_the_cache_does_not_know(scanned: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    _, db = scanned
    new = tmp_path / "new.flac"
    ffmpeg_encode(music_like(13.0, seed=99), 44_100, new, ["-c:a", "flac"])
    out = tmp_path / "new.png"
    config = tmp_path / "config.toml"
    config.write_text('[genres]\nparents = true\nrename = {"Electronic" = "Electronica"}\n')
    before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM tracks").fetchone()
    r = run_cli("show", str(new), "--plot", str(out), "--db", f"sqlite:///{db}", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert "4 windows, scores just analysed" in r.stdout
    drawn = series(out)
    assert len(drawn["times"]) == 4 and "Electronic" not in drawn["series"]
    assert "Electronica" in drawn["series"]
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM tracks").fetchone() == before  # read-only
    # Errors: a file that cannot be analysed, several files, no such file.
    bad = tmp_path / "bad.mp3"
    bad.write_text("not music")
    r = run_cli("show", str(bad), "--plot", str(out), "--db", f"sqlite:///{db}")
    assert r.returncode == 1 and "not an audio file" in r.stderr
    r = run_cli("show", str(new), str(new), "--plot", str(out), "--db", f"sqlite:///{db}")
    assert r.returncode == 2 and "one file at a time" in r.stderr


def test_stats_plot(scanned: tuple[Path, Path], tmp_path: Path) -> None:
    _, db = scanned
    out = tmp_path / "stats.png"
    r = run_cli("stats", "--plot", str(out), "--db", f"sqlite:///{db}")
    assert r.returncode == 0, r.stderr
    numbers = json.loads(run_cli("stats", "--json", "--db", f"sqlite:///{db}").stdout)
    drawn = series(out)
    assert drawn["kind"] == "stats" and drawn["files"] == 3
    assert drawn["genres"] == numbers["chosen"]  # what stats says the picture draws
    assert sum(drawn["histogram"]["counts"]) == 3 and len(drawn["histogram"]["edges"]) == 21


def without_matplotlib(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a Python where ``import matplotlib`` fails, as in a core install."""
    block = tmp_path / "block"
    block.mkdir(exist_ok=True)
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "tagger", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_without_matplotlib_the_commands_say_how_to_get_pictures(scanned: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    work, db = scanned
    for args in (["show", str(work / "music" / "t0.flac"), "--plot", str(tmp_path / "a.png")],
                 ["stats", "--plot", str(tmp_path / "b.png")]):
        r = without_matplotlib(tmp_path, *args, "--db", f"sqlite:///{db}")
        assert r.returncode == 2 and HINT in r.stderr, r.stderr
    r = without_matplotlib(tmp_path, "stats", "--db", f"sqlite:///{db}")
    assert r.returncode == 0 and "files known" in r.stdout  # everything else works
    assert not list(tmp_path.glob("*.png"))
    w, h, _ = read_png(Path(__file__).resolve().parent.parent / "docs" / "show-plot.png")
    assert w > 600 and h > 300  # the README's example picture is there
