"""The genre map ([genres]): its rules, its errors at start, and every front door using it."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from conftest import ffmpeg_encode, music_like
from test_cli import run_cli
from test_daemon import _no_daemon_left_behind  # noqa: F401 (autouse: no daemon outlives a test)

from tagger.analysis.model.resolved import open_model
from tagger.analysis.taxonomy import Selection, choose, genre_names, parent_tree
from tagger.analysis.vocabulary import GenreMap, choose_mapped, parse
from tagger.errors import ConfigError
from tagger.settings import build_settings
from tagger.tags import read_genres, write_genres
from tagger.training.labels import Labelled, label_set

SCORES = {"Heavy Metal": 0.62, "Metal": 0.5, "Hip-Hop": 0.45, "Pop": 0.7, "Rock": 0.33,
          "Alternative Rock": 0.4, "Alternative": 0.38, "Jazz": 0.05}


def pick(table: dict[str, object], scores: dict[str, float] = SCORES, **sel: object) -> list[str]:
    m = build_settings({"genres": table}).genres
    return [g for g, _ in choose_mapped(choose, scores, Selection(genres=m, **sel))]  # type: ignore[arg-type]


# --- the rules ------------------------------------------------------------------------------------


def test_an_empty_map_is_exactly_the_models_own_choice() -> None:
    rng = random.Random(5)
    names = list(genre_names())
    for _ in range(300):
        scores = {n: rng.random() for n in rng.sample(names, rng.randint(1, 12))}
        sel = Selection(top_k=rng.randint(1, 5), min_confidence=rng.random() * 0.6)
        assert choose_mapped(choose, scores, sel) == choose(scores, sel)
    assert GenreMap().fingerprint() == ""


def test_rename_exclude_include_parents() -> None:
    assert pick({}) == ["Pop", "Heavy Metal", "Metal"]
    assert pick({"rename": {"Heavy Metal": "Heavy"}}) == ["Pop", "Heavy", "Metal"]
    # Excluded genres are never written; the next best take their place.
    assert pick({"exclude": ["Pop", "Metal"]}) == ["Heavy Metal", "Hip-Hop", "Alternative Rock"]
    # Only these may be written: ranks among them only (the floor follows the best allowed).
    assert pick({"include": ["Rock", "Alternative", "Jazz"]}) == ["Alternative", "Rock"]
    # Parents come after the chosen genres, once, and obey include/exclude.
    assert pick({"parents": True}, top_k=2) == ["Pop", "Heavy Metal", "Metal"]
    assert pick({"parents": True, "exclude": ["Pop", "Metal"]}, top_k=2) == ["Heavy Metal", "Hip-Hop"]
    assert pick({"parents": {"Hip-Hop": "Urban"}, "exclude": ["Pop", "Metal"]}, top_k=2) == [
        "Heavy Metal", "Hip-Hop", "Urban"]
    assert pick({"parents": {"Hip-Hop": "Urban"}, "exclude": ["Pop"]}, top_k=2) == [
        "Heavy Metal", "Metal"]  # Metal chosen on its own score: once
    assert pick({"parents": {"Heavy Metal": ""}}, top_k=2) == ["Pop", "Heavy Metal"]
    # A parent renamed is written under its new name.
    assert pick({"parents": True, "rename": {"Metal": "Metal Music"}, "exclude": ["Pop"]},
                top_k=1) == ["Heavy Metal", "Metal Music"]


def test_aliases_merge_on_purpose_and_match_existing_spellings() -> None:
    # Two model genres as one name: counted once, with the higher score.
    got = pick({"aliases": {"Alternative": ["Alternative Rock", "alt"]}, "exclude": ["Pop", "Metal"]},
               top_k=3)
    assert got == ["Heavy Metal", "Hip-Hop", "Alternative"]
    m = parse({"rename": {"Hip-Hop": "Hip Hop"}, "aliases": {"Hip Hop": ["hiphop", "Rap"]}})
    for spelling in ("hiphop", "HIPHOP", "rap", "Hip-Hop", "hip  hop", "Hip Hop"):
        assert m.canonical(spelling) == "Hip Hop"
    assert m.canonical("Krautrock") == "Krautrock"  # unknown words keep their spelling
    assert m.same("RAP") == m.same("hip-hop")


def test_exclude_and_include_name_model_genres_and_your_names_exactly() -> None:
    # A swap-like chain: the model's Dance is written "Electronic", its Electronic "Electronica".
    m = parse({"rename": {"Dance": "Electronic", "Electronic": "Electronica"}, "exclude": ["Dance"]})
    assert not m.allows("Dance") and m.allows("Electronic") and m.canonical("Dance") == "Electronic"
    assert m.labels(["Electronica", "Dance"]) == ("Electronica",)
    # A merged member excluded: only it stops counting, not its whole group.
    m = parse({"aliases": {"Electronic": ["Techno"]}, "exclude": ["Techno"]})
    assert not m.allows("Techno") and m.allows("Electronic")
    # A renamed genre named either way.
    for name in ("Hip-Hop", "Hip Hop", "hip hop"):
        m = parse({"rename": {"Hip-Hop": "Hip Hop"}, "exclude": [name]})
        assert not m.allows("Hip-Hop") and m.labels(["HIP HOP", "Hip-Hop"]) == ()
        m = parse({"rename": {"Hip-Hop": "Hip Hop"}, "include": [name]})
        assert m.allows("Hip-Hop") and not m.allows("Rock")


def test_without_a_map_merge_compares_as_before() -> None:
    from tagger.library.policy import decide

    # "Rock " (a stray space) is not "Rock" to the policy without a map, exactly as before.
    d = decide(["Rock "], ["Rock", "Pop"], "merge", key=GenreMap().same)
    assert d.new == ["Rock ", "Rock", "Pop"]
    m = parse({"aliases": {"Rock": ["rawk"]}})
    assert decide(["rawk "], ["Rock", "Pop"], "merge", key=m.same).new == ["rawk ", "Pop"]


def test_one_map_serves_every_shipped_model_and_your_own_tree() -> None:
    for model in ("musicnn", "musicnn-msd", "musicnn-mtt"):
        build_settings({"model": model, "genres": {"rename": {"Hip-Hop": "Hip Hop"},
                                                   "exclude": ["Classical"]}})
    s = build_settings({"genres": {"parents": {"Heavy Metal": "Hard Music", "Hard Music": "Rock"}}})
    assert s.genres.parents_of("Heavy Metal") == ["Hard Music", "Rock"]


def test_the_map_is_part_of_the_decision_key() -> None:
    a = build_settings({"genres": {"rename": {"Hip-Hop": "Hip Hop"}}}).genres.fingerprint()
    b = build_settings({"genres": {"rename": {"Hip-Hop": "Hip Hop"}, "exclude": ["Pop"]}}).genres
    assert a and b.fingerprint() and a != b.fingerprint()
    assert build_settings({"genres": {"rename": {"Hip-Hop": "Hip Hop"}}}).genres.fingerprint() == a


def test_training_labels_go_through_the_map() -> None:
    m = parse({"rename": {"Hip-Hop": "Hip Hop"}, "aliases": {"Hip Hop": ["hiphop", "rap"]},
               "exclude": ["Christmas"], "parents": {"Bebop": "Jazz"}}, parent_tree())
    files = [Labelled(f"/x/{g}{i}.mp3", genres, f"a{i}")
             for i in range(4) for g, genres in (
                 ("a", ("hiphop",)), ("b", ("Rap", "Christmas")), ("c", ("Hip-Hop",)),
                 ("d", ("Bebop", "Jazz")), ("e", ("Heavy Metal", "Metal")), ("f", ("Christmas",)))]
    labels = label_set(files, 1, [], m)
    assert labels.classes == ["Bebop", "Heavy Metal", "Hip Hop"]  # parents implied, not labels
    assert labels.left_out == {"Christmas": 8}
    assert "Christmas" in labels.vocabulary and "Hip Hop" in labels.vocabulary


# --- errors at start ------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "says"), [
    ({"exclude": ["Rokc"]},
     "exclude names 'Rokc', which is not a genre of this model (did you mean 'Rock'?)"),
    ({"rename": {"Hiphop": "Rap"}}, "rename names 'Hiphop'"),
    ({"include": ["Jazz", "Bebop"]}, "include names 'Bebop'"),
    ({"aliases": {"Hip Hop": ["hiphop"]}}, "did you mean 'Hip-Hop'"),
    ({"rename": {"Hip-Hop": "Rap", "R&B": "Rap"}}, "renames 'Hip-Hop' and 'R&B' both to 'Rap'"),
    ({"rename": {"Indie": "Indie Rock"}}, 'aliases = {"Indie Rock" = ["Indie"]}'),
    ({"rename": {"R&B": "R&B / Soul"}}, "contains '/'"),
    ({"rename": {"R&B": "Rhythm; Blues"}}, "contains ';'"),
    ({"parents": {"Jazz": "Jazz, Blues"}}, "contains ','"),
    ({"rename": {"Jazz": "17"}}, "is a number"),
    ({"include": []}, "nothing could ever be written"),
    ({"include": ["Jazz"], "exclude": ["jazz"]}, "in both include and exclude"),
    ({"parents": {"Jazz": "Blues", "Blues": "Jazz"}}, "goes round in a circle"),
    ({"aliases": {"Rock": ["x"], "Pop": ["X"]}}, "alias of both"),
    ({"colour": "blue"}, "unknown key 'genres.colour'"),
    ({"rename": {"Foo": "Rock"}}, "rename names 'Foo'"),
    ({"rename": {"Techno": "Tekno"}, "aliases": {"Electronic": ["Techno"]}},
     "'Techno' is renamed and also an alias of 'Electronic'"),
    ({"rename": {"Rock": "Rawk"}, "aliases": {"Rock": ["Metal"]}}, "which rename calls 'Rawk'"),
    ({"exclude": "Pop"}, "must be a list"),
])
def test_a_bad_map_is_a_clear_error(table: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match="genres") as e:
        build_settings({"genres": table})
    assert says in str(e.value)


def test_a_trained_model_knows_its_classes_and_its_labels_vocabulary(tmp_path: Path) -> None:
    import numpy as np

    from tagger.analysis.model.catalog import model_version
    from tagger.analysis.model.trained import WEIGHTS, save

    meta = {"name": "m", "classes": ["Bebop", "Swing"], "thresholds": [0.5, 0.5],
            "multi_label": False, "pooling": "linear", "feature": "pooled", "dims": 4,
            "base": "musicnn", "base_version": model_version("musicnn"), "seed": 0,
            # as train records them: the labels' genres as written and those the map left out
            "training": {"counts": {"Bebop": 10, "Swing": 10}, "vocabulary": ["Christmas", "Hip-Hop"]}}
    arrays = {k: np.zeros((4, 2) if k == "out/kernel" else (2,) if k == "out/bias" else (4,),
                          np.float32) for k in (*WEIGHTS["linear"], "scale/mean", "scale/std")}
    save(str(tmp_path / "m.npz"), meta, arrays)
    model = str(tmp_path / "m.npz")
    ok = build_settings({"model": model, "genres": {"exclude": ["Christmas"], "parents": {"Bebop": "Jazz"},
                                                    "rename": {"Hip-Hop": "Swing"}}})
    assert ok.genres.from_model("Bebop") == "Bebop"
    with pytest.raises(ConfigError, match="did you mean 'Bebop'"):
        build_settings({"model": model, "genres": {"include": ["Bepop"]}})
    got = open_model(model).choose({"Bebop": 0.9, "Swing": 0.1}, ok.selection())
    assert [g for g, _ in got] == ["Bebop", "Jazz"]
    # A multi-label model scores every class it has, against thresholds that can be 0: an
    # excluded class must still never come out.
    meta = {**meta, "multi_label": True, "thresholds": [0.5, 0.0]}
    save(str(tmp_path / "multi.npz"), meta, arrays)
    multi = str(tmp_path / "multi.npz")
    plain = build_settings({"model": multi}).selection()
    assert [g for g, _ in open_model(multi).choose({"Bebop": 0.9, "Swing": 0.0}, plain)] == ["Bebop", "Swing"]
    sel = build_settings({"model": multi, "genres": {"exclude": ["Swing"]}}).selection()
    assert [g for g, _ in open_model(multi).choose({"Bebop": 0.9, "Swing": 0.0}, sel)] == ["Bebop"]


# --- every front door -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vocab") / "music"
    root.mkdir()
    for i in range(3):
        ffmpeg_encode(music_like(7.0, seed=i), 44_100, root / f"track{i}.flac", ["-c:a", "flac"])
    return root


def scan(root: Path, db: Path, config: Path, *more: str) -> tuple[int, str]:
    r = run_cli("scan", str(root), "--db", f"sqlite:///{db}", "--config", str(config),
                "--min-confidence", "0.01", "--top-k", "2", *more)
    return r.returncode, r.stderr


def rows(db: Path) -> dict[str, tuple[dict[str, float], list[str], int]]:
    con = sqlite3.connect(db)
    try:
        return {p: (json.loads(s or "{}"), json.loads(c or "[]"), n) for p, s, c, n in con.execute(
            "SELECT path, genre_scores, genres_chosen, analyses FROM tracks")}
    finally:
        con.close()


def test_scan_writes_your_words_and_a_new_map_re_decides_from_the_cache(library: Path,
                                                                        tmp_path: Path) -> None:
    db, config = tmp_path / "cache.sqlite", tmp_path / "config.toml"
    config.write_text("")
    code, err = scan(library, db, config)
    assert code == 0, err
    before = rows(db)
    tops = {s: sorted(sc, key=lambda g: -sc[g])[0] for s, (sc, _, _) in before.items()}
    top = max(set(tops.values()), key=list(tops.values()).count)  # the genre most files got
    config.write_text(f'[genres]\nrename = {{"{top}" = "My {top}"}}\nparents = true\n')
    code, err = scan(library, db, config)
    assert code == 0, err
    assert "0 analysed" in err and "3 from the cache" in err
    after = rows(db)
    for path, (_, chosen, analyses) in after.items():
        assert analyses == 1
        assert read_genres(path) == chosen
        if tops[path] == top:
            assert chosen[0] == f"My {top}" and top not in chosen
    # Excluding that genre: re-decided again, nothing analysed, the genre gone everywhere.
    config.write_text(f'[genres]\nexclude = ["{top}"]\n')
    code, err = scan(library, db, config, "--policy", "overwrite")
    assert code == 0 and "0 analysed" in err, err
    for path, (_, chosen, analyses) in rows(db).items():
        assert analyses == 1 and top not in chosen and f"My {top}" not in chosen
        assert read_genres(path) == chosen
    # The same map again: nothing to do at all.
    code, err = scan(library, db, config, "--policy", "overwrite")
    assert "3 unchanged" in err, err


def test_merge_does_not_add_a_genre_the_file_has_under_an_alias(library: Path, tmp_path: Path) -> None:
    db, config = tmp_path / "cache.sqlite", tmp_path / "config.toml"
    config.write_text("")
    assert scan(library, db, config, "--dry-run")[0] == 0
    path, (scores, _, _) = sorted(rows(db).items())[0]
    top = max(scores, key=lambda g: scores[g])
    song = tmp_path / "song.flac"
    song.write_bytes(Path(path).read_bytes())
    write_genres(song, ["my-" + top.lower()])
    config.write_text(f'[genres]\naliases = {{"{top}" = ["my-{top.lower()}"]}}\n')
    code, err = scan(tmp_path, db, config, "--policy", "merge")
    assert code == 0, err
    got = read_genres(song)
    assert got[0] == "my-" + top.lower() and top not in got


def test_a_bad_map_stops_every_front_door_before_work(library: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[genres]\nexclude = ["Rokc"]\n')
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    for args in (["scan", str(library), "--db", db], ["predict", str(library)],
                 ["revert", str(library), "--db", db], ["watch", str(library), "--db", db]):
        r = run_cli(*args, "--config", str(config))
        assert r.returncode == 2, (args, r.stderr)
        assert "exclude names 'Rokc'" in r.stderr and "did you mean 'Rock'" in r.stderr
    assert not (tmp_path / "cache.sqlite").exists()  # said before anything was opened


def test_predict_answers_in_your_words(library: Path, tmp_path: Path) -> None:
    plain = json.loads(run_cli("predict", "--json", "--min-confidence", "0.01",
                               str(library / "track0.flac")).stdout)[0]
    top = plain["genres"][0]["genre"]
    config = tmp_path / "config.toml"
    config.write_text(f'[genres]\nrename = {{"{top}" = "Renamed"}}\n')
    mine = json.loads(run_cli("predict", "--json", "--min-confidence", "0.01", "--config", str(config),
                              str(library / "track0.flac")).stdout)[0]
    assert mine["genres"][0] == {"genre": "Renamed", "confidence": plain["genres"][0]["confidence"]}
    assert mine["genre_scores"] == plain["genre_scores"]  # the model's own, as the cache keeps them


def test_the_daemon_re_decides_from_the_cache_after_a_sighup(tmp_path: Path) -> None:
    import shutil
    import signal
    import time

    from test_daemon import Daemon, wait_until

    root, db, log = tmp_path / "music", tmp_path / "cache.sqlite", tmp_path / "daemon.log"
    root.mkdir()
    config = tmp_path / "config.toml"
    config.write_text("top_k = 2\n")
    daemon = Daemon(root, db, log, "--config", str(config))
    song = root / "song.flac"
    fresh = ffmpeg_encode(music_like(7.0, seed=42), 44_100, tmp_path / "song.flac", ["-c:a", "flac"])
    shutil.copy(fresh, song)  # untagged (the module's library files are tagged by other tests)
    assert wait_until(lambda: read_genres(song) != [], 120), log.read_text()
    assert "(none) -> " in log.read_text()  # written by us, not left as a person's
    first = read_genres(song)
    time.sleep(3)  # our own write's events settle (0.5 s): nothing left to wake the daemon
    config.write_text(f'top_k = 2\n[genres]\nrename = {{"{first[0]}" = "Renamed"}}\n')
    daemon.proc.send_signal(signal.SIGHUP)
    assert wait_until(lambda: read_genres(song) == ["Renamed", *first[1:]], 60), log.read_text()
    assert rows(db)[str(song)][2] == 1  # decided again, not analysed again
    assert daemon.stop() == 0
