"""The library teaches it by itself (issue 25, item 4): ``learn = true`` and ``genre-tagger learn``.

A real daemon on rendered songs (``tests/labelled.py``) with genres a person set, a real SQLite
cache, real CLI subprocesses: a candidate is refused when the labels are bad, accepted when
they are good, the files whose genres are ours are re-decided from stored features (nothing
decoded again), a person's genres and files are never touched, and one command goes back.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from daemons import Daemon, no_daemon_left_behind, pg_query, query, wait_until
from labelled import TIMGM, available, render_set

from tagger.cache import Cache
from tagger.cache.learning import Decisions
from tagger.cache.owners import process_id
from tagger.errors import LearningMoved
from tagger.settings import Settings
from tagger.tags import TagOptions, read_genres, write_genres
from tagger.training.labels import person_genres
from tagger.training.learning import (
    Round,
    Tally,
    back,
    commonest,
    learn,
    needed,
    song_key,
    tally,
    verdict,
)

GENRES = ["Tango", "Polka", "Swing"]
no_daemon = pytest.fixture(autouse=True)(no_daemon_left_behind)


# --- pure pieces ---------------------------------------------------------------------------------


def test_the_verdict_needs_the_margin_the_answer_rate_and_to_beat_the_commonest_genre() -> None:
    base = Tally(40, 14, 40)  # always answering the commonest genre: 0.35
    ok, why = verdict(Tally(40, 10, 20), Tally(40, 30, 40), base, 0.05, "musicnn-msd")
    assert ok and "better by at least 0.05" in why and "0.75" in why and "0.25" in why
    # better than the model in use, but no better than the commonest genre: labels at random
    ok, why = verdict(Tally(40, 2, 10), Tally(40, 15, 40), base, 0.05, "musicnn-msd")
    assert not ok and "commonest genre (0.35)" in why and "do not follow the audio" in why
    ok, why = verdict(Tally(40, 29, 40), Tally(40, 30, 40), base, 0.05, "m")  # 0.75 vs 0.725
    assert not ok and "not better by the margin (0.05, 2 songs)" in why
    ok, why = verdict(Tally(40, 28, 40), Tally(40, 30, 40), base, 0.05, "m")  # 2 songs: enough
    assert ok
    ok, why = verdict(Tally(40, 20, 40), Tally(40, 30, 36), base, 0.05, "m")
    assert not ok and "more songs without genres" in why
    # counted in songs: 0.05 of 20 is one song, of 21 two; never zero
    assert (needed(0.05, 20), needed(0.05, 21), needed(0.0, 30), needed(0.1, 30)) == (1, 2, 1, 3)
    # the best constant answer, known afterwards; several genres on a song count once each
    assert commonest([("Rock",), ("rock", "Blues"), ("Jazz",)]) == Tally(3, 2, 3)
    # the shipped model's spelling is a person's genre; an abstention is never right
    assert tally(["Hip-Hop", None, "Rock"], [("hiphop",), ("Rock",), ("Jazz",)]) == Tally(3, 1, 2)
    # an answer outside the labels' genres is no answer in the person's words
    assert tally(["Jazz", "Tango", None], [("Tango",)] * 3, ["Tango", "Polka"]) == Tally(3, 1, 1)
    assert song_key("pcm:1", ["Rock", "blues"]) == song_key("pcm:1", ["Blues", "rock"])


def test_a_persons_genres_are_never_ours_joined_merged_or_left_in_a_correction() -> None:
    ours = ["Jazz", "Pop", "Country"]
    assert person_genres(["Blues"], None, None) == ["Blues"]  # never written: theirs
    assert person_genres(["Jazz", "Pop", "Country"], ours, []) == []  # ours, untouched
    assert person_genres(["jazz; pop; country"], ours, []) == []  # ours, as one joined value
    assert person_genres(["Jazz, Pop, Country"], ours, []) == []  # beets < 2.7 joins with ", "
    # merge kept theirs in front of ours: theirs are the labels
    assert person_genres(["Blues", "Jazz", "Pop"], ["Blues", "Jazz", "Pop"], ["Blues"]) == ["Blues"]
    # a correction of the first says the first, not that the two it left were right
    assert person_genres(["Tango", "Pop", "Country"], ours, []) == ["Tango"]
    # nor does removing one of ours say the rest were right; their own stays theirs
    assert person_genres(["Jazz"], ours, []) == []
    assert person_genres(["Blues", "Jazz"], ["Blues", "Jazz", "Pop"], ["Blues"]) == ["Blues"]


def test_decisions_chain_back_and_one_learner_at_a_time(db_url: str) -> None:
    with Cache(db_url, owner="a:1") as a, Cache(db_url, owner="b:2") as b:
        da, db = Decisions(a), Decisions(b)
        assert da.in_use("musicnn-msd") is None and da.latest("musicnn-msd") is None
        first = da.record("musicnn-msd", "switched", "better", after=None, in_use=None,
                          previous=None, data=b"one", trained_songs=["x|rock"],
                          trained_groups=["artist:x"],
                          version="learned-1@aa")
        assert first.in_use == first.id and db.in_use("musicnn-msd") == first
        kept = da.record("musicnn-msd", "kept", "not better", after=first.id, in_use=first.id,
                         previous=first.id)
        assert db.in_use("musicnn-msd") == first and kept.decision == "kept"
        # decided from an older state (a round that began before this 'kept'): not recorded
        with pytest.raises(LearningMoved):
            db.record("musicnn-msd", "switched", "better", after=first.id, in_use=None,
                      previous=first.id, data=b"stale", version="learned-x@ff")
        second = da.record("musicnn-msd", "switched", "better", after=kept.id, in_use=None,
                           previous=first.id, data=b"two", version="learned-2@bb")
        assert db.in_use("musicnn-msd") == second and db.model_file(first.id) == b"one"
        assert db.trained_on(first.id) == ({"x|rock"}, {"artist:x"})
        assert db.in_use("other-model") is None
        # one learner at a time: b waits while a holds the lease, takes it once it lapses
        assert da.claim() is None and db.claim() == "a:1" and da.claim() is None  # a's again
        da.release()
        assert db.claim(seconds=-1) is None and da.claim() is None  # b's lapsed at once
        da.release()
        assert db.claim() is None
        db.release()
        # back, again and again, down to the setting's own model, and no further
        settings = Settings(model="musicnn-msd")
        one = back(settings, a)
        assert one.result == "back" and "from learned-2@bb to learned-1@aa" in one.said
        assert db.in_use("musicnn-msd") == first
        two = back(settings, b)
        assert two.result == "back" and "from learned-1@aa to musicnn-msd" in two.said
        assert db.in_use("musicnn-msd") is None
        assert back(settings, a).result == "waiting"
    # a learner killed (-9) on this machine holds the lease no longer
    learner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    name = process_id(time.time()).replace(f":{os.getpid()}:", f":{learner.pid}:")
    try:
        with Cache(db_url, owner=name) as c:
            assert Decisions(c).claim() is None
        with Cache(db_url) as c:
            assert Decisions(c).claim() == name  # alive: it holds the lease
            learner.kill()
            learner.wait()
            assert Decisions(c).claim() is None
    finally:
        learner.kill()
        learner.wait()


def test_a_learnt_model_file_comes_back_from_the_cache_when_missing_or_damaged(
        tmp_path: Path) -> None:
    """The database is the one copy: a deleted, damaged or replaced file in models/ is written
    again (the same bytes, the same version) before any door uses it."""
    import numpy as np

    from tagger.analysis.model.catalog import model_version
    from tagger.analysis.model.trained import save
    from tagger.library.learned import describe, models_dir, resolve

    dims, classes = 3012, ["Polka", "Tango"]
    made = tmp_path / "learned-1.npz"
    version = save(made, {"name": "learned-1", "classes": classes, "thresholds": [0.0, 0.0],
                          "multi_label": False, "pooling": "svm", "feature": "pooled",
                          "dims": dims, "base": "musicnn", "base_version": model_version("musicnn"),
                          "training": {"songs": 20}},
                   {"out/kernel": np.zeros((dims, 2), np.float32),
                    "out/bias": np.zeros(2, np.float32), "scale/mean": np.zeros(dims, np.float32),
                    "scale/std": np.ones(dims, np.float32)})
    settings = Settings(model="musicnn")
    with Cache(f"sqlite:///{tmp_path / 'cache.sqlite'}") as cache:
        assert resolve(settings, cache).settings == settings  # nothing learnt: the setting's
        Decisions(cache).record("musicnn", "switched", "better", after=None, in_use=None,
                                previous=None, data=made.read_bytes(), version=version,
                                songs=20)
        path = models_dir(cache) / "learned-1.npz"
        for harm in (lambda: None, path.unlink, lambda: path.write_bytes(b"damaged"),
                     lambda: path.write_bytes(made.read_bytes()[:-10] + b"0123456789")):
            harm()
            got = resolve(settings, cache)
            assert got.settings.model == str(path) and path.read_bytes() == made.read_bytes()
            assert got.switch is not None and got.switch.version == version
        assert describe(cache, settings)["model"] == version
        assert resolve(got.settings, cache).settings == got.settings  # resolved once is resolved


class Shelf:
    """A library of real files a person tagged (genre and artist), in a real SQLite cache with
    stored features made here: each genre its own direction in feature space, each song its own
    noise. For what a round decides and why, without decoding (times and accuracies on real
    audio: bench/bench_learn.py and the daemon test below)."""

    def __init__(self, tmp_path: Path) -> None:
        from conftest import ffmpeg_encode, music_like

        self.root = tmp_path / "music"
        self.root.mkdir()
        self.audio = ffmpeg_encode(music_like(2.0, 22_050), 22_050, tmp_path / "a.mp3", [])
        self.cache = Cache(f"sqlite:///{tmp_path / 'cache.sqlite'}")
        self.rng = np.random.default_rng(0)
        self.style = {g: self.rng.normal(0, 1, 3012) for g in ("Alpha", "Beta", "Gamma", "Delta")}
        self.n = 0
        self.settings = Settings(roots=(str(self.root),))

    def add(self, genre: str, artist: str, songs: int) -> None:
        from labelled import tag_artist

        from tagger.analysis.embedding import pack
        from tagger.analysis.model.catalog import model_version
        from tagger.cache.store import StoredFeatures

        for _ in range(songs):
            self.n += 1
            path = self.root / artist / f"{self.n:04d}.mp3"
            path.parent.mkdir(exist_ok=True)
            shutil.copy(self.audio, path)
            write_genres(str(path), [genre], TagOptions())
            tag_artist(path, artist)
            bag = (self.style[genre] + self.rng.normal(0, 1.5, (4, 3012))).astype(np.float32)
            st = path.stat()
            self.cache.upsert(str(path), audio_id=f"shelf:{self.n}", status="done",
                              size=st.st_size, mtime_ns=st.st_mtime_ns)
            self.cache.put_features(f"shelf:{self.n}", model_version("musicnn"),
                                    StoredFeatures(4, pack(bag), {}))

    def learn(self) -> Round:
        return learn(self.settings, self.cache, lambda _: None)


def test_a_round_judges_on_songs_and_artists_the_model_in_use_never_learnt_from(
        tmp_path: Path) -> None:
    shelf = Shelf(tmp_path)
    try:
        for genre in ("Alpha", "Beta", "Gamma"):
            for k in range(4):
                shelf.add(genre, f"{genre} band {k}", 3)
        shelf.add("Delta", "the one Delta band", 10)  # a genre from one artist only
        first = shelf.learn()
        assert first.result == "switched" and first.row is not None, first.said
        assert first.row.songs == 46 and 30 <= first.row.compared <= 36  # not the 10 Delta
        assert "musicnn on 0.00; answering 1.00 vs 0.00" in first.said  # it names none of them
        assert (f"{46 - first.row.compared} songs not judged: held out with a genre whose songs "
                "all come from one artist") in first.said
        # Five songs of one new band: too few to judge the learnt model on.
        shelf.add("Alpha", "new band", 5)
        wait = shelf.learn()
        assert wait.result == "waiting" and wait.said.startswith(
            "5 labelled songs from 1 artists, albums or folders that learned-"), wait.said
        # Twenty from new bands: judged on those alone; as good as the model in use: kept.
        for genre in ("Beta", "Gamma", "Alpha"):
            shelf.add(genre, f"newer {genre} band", 5)
        third = shelf.learn()
        assert third.result == "kept" and third.row is not None, third.said
        assert third.row.compared == 20 and "not better by the margin" in third.said
        assert third.row.current_right == 1.0 and third.row.candidate_right == 1.0
        assert shelf.learn().result == "unchanged"
    finally:
        shelf.cache.close()


# --- the loop, end to end, in a real daemon -------------------------------------------------------


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    if not available():
        pytest.fail("mma, fluidsynth and a General MIDI soundfont are needed "
                    "(apt install mma fluidsynth timgm6mb-soundfont)")
    root = tmp_path_factory.mktemp("learning-songs")
    person = render_set(root / "person", GENRES, 10, seconds=8, seed=5, fmt="mp3", fonts=(TIMGM,))
    ours = render_set(root / "ours", GENRES, 1, seconds=8, seed=77, fmt="mp3", fonts=(TIMGM,))
    return {"person": [s.path for s in person], "ours": [s.path for s in ours]}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # the daemon's settings (tests/daemons.py): a command and the daemon share one config
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "XDG_CONFIG_HOME": str(db.parent / "none"),
           "GENRE_TAGGER_MIN_CONFIDENCE": "0.01"}
    return subprocess.run([sys.executable, "-m", "tagger", *args, "--db", f"sqlite:///{db}"],
                          capture_output=True, text=True, env=env, timeout=600)


def _decisions(db: Path) -> list[tuple[int, str, str, str | None]]:
    return query(db, "SELECT id, decision, why, version FROM learning ORDER BY id")


def _genres(paths: Iterator[Path] | list[Path]) -> dict[Path, list[str]]:
    return {p: read_genres(str(p), TagOptions()) for p in paths}


def test_the_daemon_learns_from_a_persons_genres_refuses_bad_labels_and_goes_back(
        songs: dict[str, list[Path]], tmp_path: Path) -> None:
    lib, db, log = tmp_path / "music", tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    person: list[Path] = []
    truth: dict[Path, str] = {}
    for src in songs["person"]:
        dest = lib / "shelf" / src.parent.name / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        person.append(dest)
        truth[dest] = src.parent.name
    ours = []
    for src in songs["ours"]:
        dest = lib / "new" / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        ours.append(dest)
    # A person's bad bulk edit: the right genres, dealt to the wrong songs.
    dealt = [truth[p] for p in person]
    random.Random(3).shuffle(dealt)
    for p, g in zip(person, dealt):
        write_genres(str(p), [g], TagOptions())
    env = {"GENRE_TAGGER_LEARN": "true", "GENRE_TAGGER_LEARN_SECONDS": "1"}

    daemon = Daemon(lib, db, log, env=env)
    assert wait_until(lambda: any(d[1] == "kept" for d in _decisions(db)), 300), \
        log.read_text()[-3000:]
    kept = next(d for d in _decisions(db) if d[1] == "kept")
    assert "commonest genre" in kept[2] and "do not follow the audio" in kept[2], kept
    first = _genres(ours)
    assert all(first.values()), first  # tagged by the shipped model meanwhile
    assert not set(g for gs in first.values() for g in gs) & set(GENRES)
    assert daemon.stop() == 0

    # The person puts it right while the daemon is down: learnt from at its next look.
    for p in person:
        write_genres(str(p), [truth[p]], TagOptions())
    fixed = {p: _sha(p) for p in person}
    analyses = dict(query(db, "SELECT path, analyses FROM tracks"))
    daemon = Daemon(lib, db, log, env=env)

    def switched() -> list[tuple[int, str, str, str | None]]:
        return [d for d in _decisions(db) if d[1] == "switched"]

    assert wait_until(lambda: bool(switched()), 300), log.read_text()[-3000:]
    version = switched()[0][3]
    assert version is not None and version.startswith("learned-")

    def redecided() -> bool:
        rows = dict(query(db, "SELECT path, model_version FROM tracks"))
        return all(rows.get(str(p)) == version for p in ours)

    assert wait_until(redecided, 120), log.read_text()[-3000:]
    now = _genres(ours)
    for p, genres in now.items():  # ours: re-decided in the person's words (or left, abstaining)
        status = query(db, f"SELECT status FROM tracks WHERE path = '{p}'")[0][0]
        assert set(genres) <= set(GENRES) or status == "abstained", (p, genres, status)
    assert sum(genres[:1] == [p.name.split("-")[0].title()] for p, genres in now.items()) >= 2
    # Nothing decoded again, and a person's files (tags, audio, bytes) untouched.
    assert dict(query(db, "SELECT path, analyses FROM tracks")) == analyses
    assert {p: _sha(p) for p in person} == fixed
    st = _cli(db, "status")
    assert f"model: {version} (learnt from the genres people set (30 songs)" in st.stdout, st.stdout
    assert "'genre-tagger learn --back' returns to musicnn" in st.stdout
    assert "learning: on; last looked" in st.stdout
    doc = json.loads(_cli(db, "status", "--json").stdout)
    assert doc["model"]["model"] == version and doc["model"]["learn"] is True

    # One command goes back; the daemon re-decides our files with the shipped model again.
    back = _cli(db, "learn", str(lib), "--back")
    assert back.returncode == 0 and f"went back from {version} to musicnn" in back.stdout, back
    assert wait_until(lambda: _genres(ours) == first, 120), (_genres(ours), first,
                                                             log.read_text()[-3000:])
    assert daemon.stop(signal.SIGTERM) == 0
    assert {p: _sha(p) for p in person} == fixed
    assert dict(query(db, "SELECT path, analyses FROM tracks")) == analyses
    st = _cli(db, "stats")
    assert "model: musicnn (the 'model' setting; you went back to it on" in st.stdout, st.stdout
    # The labels are the ones it went back from: nothing to learn until a person changes them.
    again = _cli(db, "learn", str(lib))
    assert again.returncode == 0 and "nothing new to learn from" in again.stdout, again
    assert [d[1] for d in _decisions(db)] == ["kept", "switched", "back"]

    # A write of ours caught between its rename and its record is not a person's correction.
    from tagger.analysis.model.catalog import model_version
    from tagger.cache import Intent
    from tagger.training.learning import gather

    target = ours[0]
    settings = Settings(roots=(str(lib),))
    with Cache(f"sqlite:///{db}") as cache:
        cache.begin_write(Intent(str(target), first[target], [], ["Tango"], None))
        write_genres(str(target), ["Tango"], TagOptions())
        labelled = {f.path for f in gather(settings, cache, model_version("musicnn")).data.files}
        assert str(target) not in labelled and len(labelled) == 30
        cache.drop_intent(str(target))  # no write in flight: a person's correction, a label
        labelled = {f.path for f in gather(settings, cache, model_version("musicnn")).data.files}
        assert str(target) in labelled and len(labelled) == 31


def test_learning_refuses_overwrite_and_says_when_there_is_nothing_to_go_back_from(
        tmp_path: Path) -> None:
    lib = tmp_path / "music"
    lib.mkdir()
    db = tmp_path / "c.sqlite"
    r = _cli(db, "learn", str(lib), "--policy", "overwrite")
    assert r.returncode == 2 and "needs policy 'missing' or 'merge'" in r.stderr, r
    r = _cli(db, "watch", str(lib), "--learn", "--policy", "overwrite")
    assert r.returncode == 2 and "'learn' needs policy 'missing' or 'merge'" in r.stderr, r
    r = _cli(db, "learn", str(lib), "--back")
    assert r.returncode == 0 and "nothing to go back from" in r.stdout, r
    r = _cli(db, "learn", str(lib))
    assert r.returncode == 0 and "not enough labels yet" in r.stdout, r


def test_two_daemons_on_one_postgresql_cache_learn_once_and_both_use_the_model(
        songs: dict[str, list[Path]], tmp_path: Path, postgres: object) -> None:
    """Two machines' daemons (here: two processes) sharing a PostgreSQL cache, both told to
    learn: one round switches, the other does not learn the same labels again (it waits for
    the lease, then finds them decided), and both tag with the learnt model, each writing its
    file out of the database into its own state directory."""
    url = postgres.database()  # type: ignore[attr-defined]

    def pg(statement: str) -> list[tuple]:  # type: ignore[type-arg]
        return pg_query(url, statement)

    lib = tmp_path / "music"
    for src in songs["person"]:
        dest = lib / "shelf" / src.parent.name / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        write_genres(str(dest), [src.parent.name], TagOptions())
    ours = []
    for src in songs["ours"]:
        ours.append(lib / "new" / src.name)
        ours[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, ours[-1])
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    daemons = [Daemon(lib, tmp_path / "x.sqlite", log, url=url,
                      env={"GENRE_TAGGER_LEARN": "true", "GENRE_TAGGER_LEARN_SECONDS": "1",
                           "XDG_STATE_HOME": str(tmp_path / f"state-{n}")})
               for n, log in enumerate(logs)]

    def said(text: str) -> int:
        return sum(log.read_text().count(text) for log in logs)

    assert wait_until(lambda: said("model: now learned-") == 2, 300), \
        [log.read_text()[-2000:] for log in logs]
    rows = pg("SELECT decision, version FROM learning ORDER BY id")
    assert [r[0] for r in rows] == ["switched"], rows
    assert said("learning: switched to") == 1  # one round, not one per daemon
    version = rows[0][1]
    for n in range(2):  # each machine wrote the model out of the database for itself
        assert (tmp_path / f"state-{n}" / "genre-tagger" / "models"
                / f"{version.split('@')[0]}.npz").is_file()
    redecided = f"SELECT count(*) FROM tracks WHERE model_version = '{version}'"
    assert wait_until(lambda: pg(redecided)[0][0] == len(ours) + len(songs["person"]), 120)
    assert all(set(read_genres(str(p), TagOptions())) <= set(GENRES) for p in ours)
    assert all(d.stop() == 0 for d in daemons)
