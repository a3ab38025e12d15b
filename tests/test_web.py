"""The page (genre-tagger serve, the daemon's listen): real server processes over a cache a real
scan made, real files, raw HTTP for the security cases, and a real headless Chromium that
plays the audio, corrects and reverts."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mutagen
import pytest
from conftest import ffmpeg_encode, music_like
from daemons import REPO, Daemon, no_daemon_left_behind, query
from pages import answers, browser, env_for, fill, free_port, serving, start, wait_for
from scanning import scanner

from tagger.cache import Cache
from tagger.cache.queue import WorkQueue
from tagger.library.tagging import CORRECTED, REVERTED, finish_interrupted_writes
from tagger.tags import TagOptions, genres_or_reason, held_open, read_genres
from tagger.training.labels import person_genres

pytest.importorskip("starlette")
_cleanup = pytest.fixture(autouse=True)(no_daemon_left_behind)

SECRET_TEXT = b"this file is outside the library"


def _ids(db: Path) -> dict[str, int]:
    return {Path(p).name: i for i, p in query(db, "SELECT id, path FROM tracks")}


def _row(db: Path, name: str) -> dict[str, Any]:
    con_rows = query(db, "SELECT path, decision_key, genres_written, genres_before, genres_seen, "
                         "status FROM tracks")
    for path, key, written, before, seen, status in con_rows:
        if Path(path).name == name:
            return {"key": key, "written": json.loads(written) if written else None,
                    "before": json.loads(before) if before else None,
                    "seen": json.loads(seen) if seen else None, "status": status}
    raise KeyError(name)


@pytest.fixture
def library(tmp_path: Path, engine: Any) -> tuple[Path, Path]:
    """A real library, scanned for real (album mode): an album of two tracks (FLAC, Ogg), a
    loose MP3 (all three tagged by us), and an Ogg whose genre a person set (left alone)."""
    root = tmp_path / "music"
    night = root / "Night"
    night.mkdir(parents=True)
    album = ["-metadata", "album=Night", "-metadata", "artist=The Fixtures"]
    ffmpeg_encode(music_like(13, seed=1), 44_100, night / "01.flac", ["-c:a", "flac", *album,
                                                                     "-metadata", "title=One"])
    ffmpeg_encode(music_like(13, seed=2), 44_100, night / "02.ogg", ["-c:a", "libvorbis", *album])
    (root / "Loose").mkdir()
    ffmpeg_encode(music_like(13, seed=3), 44_100, root / "Loose" / "a.mp3",
                  ["-c:a", "libmp3lame", "-q:a", "6"])
    (root / "Theirs").mkdir()
    ffmpeg_encode(music_like(13, seed=4), 44_100, root / "Theirs" / "p.ogg",
                  ["-c:a", "libvorbis", "-metadata", "genre=Polka"])
    db = tmp_path / "cache.sqlite"
    with Cache(f"sqlite:///{db}") as cache:
        report = scanner(root, cache, engine, album=True).run()
    assert report.counts.get("failed", 0) == 0
    return root, db


def _token(html: bytes) -> str:
    found = re.search(rb'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html[:2000]
    return found.group(1).decode()


def _form(**fields: str) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in fields.items())


# --- what the page shows ------------------------------------------------------------------------


def test_the_library_decisions_and_a_track_from_a_real_cache(library: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    root, db = library
    ids = _ids(db)
    with serving(root, f"sqlite:///{db}", tmp_path) as s:
        status, headers, body = s.request("GET", "/")
        assert status == 200 and b"<h2>Files</h2>" in body
        assert "default-src 'self'" in headers["content-security-policy"]
        assert b"Polka" in body  # a person's genre, counted without opening the file
        status, _, body = s.request("GET", "/decisions")
        page = body.decode()
        assert status == 200 and "1-4 of 4" in page
        for name in ("01.flac", "02.ogg", "a.mp3", "p.ogg"):
            assert f'/track/{ids[name]}"' in page
        # the reasons, from the cache alone
        assert "1-3 of 3" in s.request("GET", "/decisions?reason=written")[2].decode()
        kept = s.request("GET", "/decisions?reason=kept")[2].decode()
        assert "1-1 of 1" in kept and "p.ogg" in kept
        assert "1-1 of 1" in s.request("GET", "/decisions?genre=Polka")[2].decode()
        folder = quote(str(root / "Night"))
        assert "1-2 of 2" in s.request("GET", f"/decisions?folder={folder}")[2].decode()
        # least confident first: the confidences on the page ascend
        shown = [float(x) for x in re.findall(r"<td>(\d\.\d\d)</td>", page)]
        assert shown == sorted(shown) and len(shown) == 4
        # a track: the file's genres, ours, the timeline drawn from the cache, the album
        status, _, body = s.request("GET", f"/track/{ids['01.flac']}")
        page = body.decode()
        assert status == 200 and "<polyline" in page and 'class="seek"' in page
        assert f'/track/{ids["02.ogg"]}"' in page  # the album's other track
        album_link = re.search(r'href="(/decisions\?album=[^"]+)"', page)
        assert album_link is not None
        assert "1-2 of 2" in s.request("GET", album_link.group(1).replace("&amp;", "&"))[2].decode()
        now = read_genres(root / "Night" / "01.flac")
        assert now and "; ".join(now) in page
        # the audio, in pieces (HTTP ranges): exactly the file's bytes
        data = (root / "Night" / "01.flac").read_bytes()
        status, headers, body = s.request("GET", f"/track/{ids['01.flac']}/audio",
                                          headers={"Range": "bytes=100-1099"})
        assert status == 206 and body == data[100:1100]
        assert headers["content-range"] == f"bytes 100-1099/{len(data)}"
        assert headers["content-type"] == "audio/flac"
        status, headers, body = s.request("GET", f"/track/{ids['01.flac']}/audio")
        assert status == 200 and body == data
        status, _, body = s.request("GET", f"/track/{ids['01.flac']}/audio",
                                    headers={"Range": f"bytes={len(data) + 10}-"})
        assert status == 416
        assert s.request("GET", "/track/999999")[0] == 404


# --- safe by default ----------------------------------------------------------------------------


def test_no_request_path_reaches_a_file_outside_the_library(library: tuple[Path, Path],
                                                           tmp_path: Path) -> None:
    """``..``, encoded slashes and dots, absolute paths, doubled slashes: nothing outside the
    roots is served. A row whose file is outside the roots (a cache shared with another
    library), a symlink out of the library, and a folder swapped for a symlink after it was
    scanned are refused too, for playing and for writing."""
    root, db = library
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.ogg"
    secret.write_bytes(SECRET_TEXT)
    shutil.copy(root / "Theirs" / "p.ogg", outside / "real.ogg")
    (root / "link.ogg").symlink_to(outside / "real.ogg")
    with Cache(f"sqlite:///{db}") as cache:
        row = cache.get(str(root / "Theirs" / "p.ogg"))
        assert row is not None
        for path in (outside / "real.ogg", root / "link.ogg"):
            cache.upsert(str(path), status="done", genre_scores=row.genre_scores,
                         genres_chosen=["Jazz"], genres_seen=["Polka"])
    ids = _ids(db)
    with serving(root, f"sqlite:///{db}", tmp_path) as s:
        targets = ["/static/../../../../../../etc/passwd", "/static/..%2f..%2f..%2fsettings.py",
                   "/static/%2e%2e/%2e%2e/web/app.py", "/static/%2e%2e%2fapp.py",
                   "//etc/passwd", "/static//etc/passwd", f"/track/{ids['a.mp3']}%2F..%2F..%2Faudio",
                   "/track/..%2F..%2Fetc%2Fpasswd/audio", "/track/-1/audio",
                   f"/track/{ids['a.mp3']}/audio/../../../../etc/passwd",
                   f"/track/{quote(str(secret), safe='')}/audio",
                   f"/static/{quote(str(secret), safe='')}", "/static/%00",
                   f"http://127.0.0.1:{s.port}/static/../../../etc/passwd"]
        for target in targets:
            status, _, body = s.request("GET", target)
            assert status in (400, 404, 405), (target, status)
            assert b"root:" not in body and SECRET_TEXT not in body and b"import " not in body
        assert s.request("GET", "/static/page.css")[0] == 200  # the control: static files work
        for name in ("real.ogg", "link.ogg"):
            status, _, body = s.request("GET", f"/track/{ids[name]}/audio")
            assert status == 403 and b"OggS" not in body, name
        # a scanned folder swapped for a symlink to outside: the descriptor opened is checked
        night = root / "Night"
        night.rename(tmp_path / "Night-moved")
        (outside / "Night").mkdir()
        (outside / "Night" / "01.flac").write_bytes(SECRET_TEXT)
        night.symlink_to(outside / "Night")
        status, _, body = s.request("GET", f"/track/{ids['01.flac']}/audio")
        assert status == 403 and SECRET_TEXT not in body
        # and nothing is written there either
        _, _, page = s.request("GET", f"/track/{ids['a.mp3']}")
        token = _token(page)
        status, _, body = s.request("POST", f"/track/{ids['link.ogg']}/genres", _form(
            csrf=token, action="replace", genres="Tango", **{f"seen-{ids['link.ogg']}": '["Polka"]'}))
        assert status == 200 and b"outside the library roots" in body
        assert read_genres(outside / "real.ogg") == ["Polka"]
        # a file swapped for a FIFO is never opened (reading one waits for a writer forever):
        # not to show its genres, nor before a correction
        fifo = root / "Theirs" / "p.ogg"
        fifo.unlink()
        os.mkfifo(fifo)
        status, _, body = s.request("GET", f"/track/{ids['p.ogg']}")
        assert status == 200 and b"not a regular file" in body
        status, _, body = s.request("POST", f"/track/{ids['p.ogg']}/genres", _form(
            csrf=token, action="accept", **{f"seen-{ids['p.ogg']}": '["Polka"]'}))
        assert status == 200 and b"not a regular file" in body


def test_tags_are_read_from_the_file_that_was_checked(tmp_path: Path) -> None:
    """What the page reads is the file found under the roots, even if its name is made to lead
    elsewhere after the check."""
    root, outside = tmp_path / "music", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    ffmpeg_encode(music_like(2, seed=1), 44_100, root / "a.ogg",
                  ["-c:a", "libvorbis", "-metadata", "genre=Polka"])
    ffmpeg_encode(music_like(2, seed=2), 44_100, outside / "b.ogg",
                  ["-c:a", "libvorbis", "-metadata", "genre=Secret"])
    ffmpeg_encode(music_like(2, seed=3), 44_100, root / "bare.mp3",
                  ["-c:a", "libmp3lame", "-id3v2_version", "0", "-write_id3v1", "0"])
    real, opts = (str(root.resolve()),), TagOptions()
    with held_open(root / "a.ogg", real) as fh:
        (root / "a.ogg").unlink()
        (root / "a.ogg").symlink_to(outside / "b.ogg")
        assert read_genres(root / "a.ogg", opts, fh) == ["Polka"]
    assert genres_or_reason(root / "a.ogg", opts, under=real) == (
        None, "its real location is outside the library roots")
    os.mkfifo(root / "f.ogg")
    assert genres_or_reason(root / "f.ogg", opts, under=real) == (None, "not a regular file")
    assert genres_or_reason(root / "none.ogg", opts, under=real) == (None, "no such file")
    assert genres_or_reason(root / "bare.mp3", opts, under=real) == ([], None)
    # a format whose tags are not ours to write says so (read by name or through the descriptor)
    ffmpeg_encode(music_like(2, seed=4), 44_100, root / "w.wv", ["-c:a", "wavpack"])
    assert genres_or_reason(root / "w.wv", opts, under=real) == genres_or_reason(root / "w.wv", opts)
    assert (genres_or_reason(root / "w.wv", opts, under=real)[1] or "").startswith("not supported")


def test_writes_need_the_pages_token_from_the_pages_origin(library: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    root, db = library
    ids = _ids(db)
    mp3 = root / "Loose" / "a.mp3"
    before, before_bytes = read_genres(mp3), mp3.read_bytes()
    with serving(root, f"sqlite:///{db}", tmp_path) as s:
        _, _, page = s.request("GET", f"/track/{ids['a.mp3']}")
        token = _token(page)
        fields = {"action": "replace", "genres": "Tango", f"seen-{ids['a.mp3']}": json.dumps(before)}
        target = f"/track/{ids['a.mp3']}/genres"
        assert s.request("POST", target, _form(**fields))[0] == 403  # no token
        assert s.request("POST", target, _form(csrf="0" * 64, **fields))[0] == 403
        assert s.request("POST", target, _form(csrf=token, **fields),
                         {"Origin": "http://evil.example"})[0] == 403
        assert s.request("POST", target, _form(csrf=token, **fields), {"Origin": "null"})[0] == 403
        assert s.request("POST", target, _form(csrf=token, **fields),
                         {"Referer": "http://evil.example/page"})[0] == 403
        # a rebinding site's name for 127.0.0.1 gets nothing, not even a read
        status, _, body = s.request("GET", "/", headers={"Host": "evil.example"})
        assert status == 421 and b"<h2>" not in body
        # nor a reverse proxy in front of a page without a password, nor another site's
        # page embedding the audio (a link from elsewhere still opens the page)
        for proxied in ({"X-Forwarded-For": "192.168.1.9"}, {"Forwarded": "for=192.168.1.9"},
                        {"Via": "1.1 nginx"}):
            assert s.request("GET", "/", headers=proxied)[0] == 421, proxied
        embed = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
                 "Sec-Fetch-Dest": "audio"}
        status, _, body = s.request("GET", f"/track/{ids['a.mp3']}/audio", headers=embed)
        assert status == 403 and b"ID3" not in body
        assert s.request("GET", "/", headers={"Sec-Fetch-Site": "cross-site",
                                               "Sec-Fetch-Mode": "navigate"})[0] == 200
        assert s.request("GET", f"/track/{ids['a.mp3']}/genres")[0] == 405  # writes are POSTs
        # odd ids name no track (not a server error); a NUL in a filter is refused in words
        for odd in ("9" * 5000, "%C2%B2", "+1", "0x1", "1.0", "9" * 19):
            assert s.request("GET", f"/track/{odd}")[0] == 404, odd[:20]
        for key in ("genre", "folder", "album", "error", "reason", "order"):
            status, _, body = s.request("GET", f"/decisions?{key}=a%00b")
            assert status == 400 and b"NUL" in body, key
        assert s.request("PUT", target, _form(csrf=token, **fields))[0] == 405
        assert mp3.read_bytes() == before_bytes
        # the same request with the token and the page's origin is written
        status, _, body = s.request("POST", target, _form(csrf=token, **fields),
                                    {"Origin": s.base})
        assert status == 200 and read_genres(mp3) == ["Tango"]


def test_a_read_only_page_offers_and_writes_nothing(library: tuple[Path, Path], tmp_path: Path) -> None:
    root, db = library
    ids = _ids(db)
    mp3 = root / "Loose" / "a.mp3"
    data = mp3.read_bytes()
    with serving(root, f"sqlite:///{db}", tmp_path, "--read-only") as s:
        _, _, page = s.request("GET", f"/track/{ids['a.mp3']}")
        assert b"<audio" in page and b'id="correct"' not in page and b"csrf" not in page
        status, _, body = s.request("POST", f"/track/{ids['a.mp3']}/genres",
                                    _form(csrf="x", action="revert"))
        assert status == 403 and b"read-only" in body
    assert mp3.read_bytes() == data


def test_beyond_this_machine_it_needs_a_secret(library: tuple[Path, Path], tmp_path: Path) -> None:
    from tagger.web.app import SESSION_SECONDS, Keys
    root, db = library
    ids = _ids(db)
    port = free_port()
    args = ["serve", str(root), "--db", f"sqlite:///{db}", "--listen", f"0.0.0.0:{port}"]
    out = subprocess.run([sys.executable, "-m", "tagger", *args], env=env_for(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "web_secret" in out.stderr and "Traceback" not in out.stderr
    assert not answers(port)
    s = start(args, tmp_path, port, web_secret="correct horse")
    try:
        assert s.proc.poll() is None, s.log.read_text()
        status, headers, _ = s.request("GET", f"/track/{ids['a.mp3']}?x=1")
        assert status == 303 and headers["location"] == f"/login?next=/track/{ids['a.mp3']}%3Fx%3D1"
        assert s.request("GET", f"/track/{ids['a.mp3']}/audio")[0] == 303
        assert s.request("POST", f"/track/{ids['a.mp3']}/genres", "action=revert")[0] == 401
        t0 = time.monotonic()
        status, headers, _ = s.request("POST", "/login", _form(password="wrong", next="/"))
        assert status == 401 and "set-cookie" not in headers and time.monotonic() - t0 >= 1.0
        status, headers, _ = s.request("POST", "/login", _form(password="correct horse",
                                                                next="//evil.example/"))
        assert status == 303 and headers["location"] == "/"  # never sent to another site
        cookie = headers["set-cookie"].split(";")[0]
        assert "httponly" in headers["set-cookie"].lower()
        assert "samesite=strict" in headers["set-cookie"].lower()
        # signed in: any Host (a reverse proxy's name) is served
        status, _, body = s.request("GET", "/", headers={"Cookie": cookie, "Host": "music.home"})
        assert status == 200 and b"<h2>Files</h2>" in body
        assert s.request("GET", "/", headers={"Cookie": cookie.split("=")[0] + "=" + "0" * 64})[0] == 303
        # a session ends after 30 days, and its date cannot be moved on without the secret
        name, _, value = cookie.partition("=")
        issued, _, mac = value.partition(".")
        old = Keys.make("correct horse").session_cookie(time.time() - SESSION_SECONDS - 5)
        flipped = mac[:-1] + ("1" if mac[-1] == "0" else "0")
        for stale in (old, f"{int(issued) - 1}.{mac}", f"{issued}.{flipped}", issued, ""):
            assert s.request("GET", "/", headers={"Cookie": f"{name}={stale}"})[0] == 303, stale
        assert s.request("GET", "/", headers={"Authorization": "Bearer correct horse"})[0] == 200
        assert s.request("GET", "/", headers={"Authorization": "Bearer correct"})[0] == 303
        # a cookie's date is ASCII digits, and few: "²" (byte 0xB2) or 5,000 digits are no
        # session, not a server error
        for odd in (f"\xb2.{mac}", "\xb9\xb2\xb3", f"{'9' * 5000}.{mac}", f"+{issued}.{mac}"):
            assert s.request("GET", "/", headers={"Cookie": f"{name}={odd}"})[0] == 303, odd[:20]
        # the sign-in page shows no CSRF token and no sign-out; a signed-in page's token is
        # its session's: another session's token (or one from before signing in) is refused
        status, _, page = s.request("GET", "/login")
        assert status == 200 and b'name="csrf"' not in page and b"Sign out" not in page
        _, _, page = s.request("GET", f"/track/{ids['a.mp3']}", headers={"Cookie": cookie})
        token = _token(page)
        assert b"Sign out" in page
        other = f"{name}={Keys.make('correct horse').session_cookie(time.time() - 100)}"
        _, _, page = s.request("GET", f"/track/{ids['a.mp3']}", headers={"Cookie": other})
        assert _token(page) != token
        mp3 = root / "Loose" / "a.mp3"
        fields = {"action": "replace", "genres": "Tango",
                  f"seen-{ids['a.mp3']}": json.dumps(read_genres(mp3))}
        status, _, _ = s.request("POST", f"/track/{ids['a.mp3']}/genres",
                                 _form(csrf=token, **fields), {"Cookie": other})
        assert status == 403 and read_genres(mp3) != ["Tango"]
        assert s.request("POST", "/logout", _form(csrf=token), {"Cookie": other})[0] == 403
        status, headers, _ = s.request("POST", "/logout", _form(csrf=token), {"Cookie": cookie})
        assert status == 303 and headers["location"] == "/login"
        # behind a TLS proxy (it says X-Forwarded-Proto: https) the cookie is Secure
        for said, secure in (({}, False), ({"X-Forwarded-Proto": "https"}, True),
                             ({"Forwarded": "for=10.0.0.2;proto=https"}, True)):
            _, headers, _ = s.request("POST", "/login", _form(password="correct horse"), said)
            assert ("; secure" in headers["set-cookie"].lower()) == secure, said
        # signed in already, the sign-in page sends you on
        status, headers, _ = s.request("GET", "/login?next=/decisions", headers={"Cookie": other})
        assert status == 303 and headers["location"] == "/decisions"
        # guesses sent side by side, by the form or as bearer tokens (any case), wait their
        # turns, a second each; beyond two waiting from one address the rest are turned away
        # without being compared, and another address still gets its turn meanwhile
        def guess(i: int) -> tuple[int, int, float]:
            if i % 2:  # a wrong token: sent to sign in; a wrong password: told so
                status = s.request("GET", "/", headers={"Authorization": f"bearer wrong {i}"})[0]
                return status, 303, time.monotonic() - t0
            status = s.request("POST", "/login", _form(password=f"wrong {i}"))[0]
            return status, 401, time.monotonic() - t0

        def owner() -> tuple[int, float]:
            time.sleep(0.3)  # while the flood waits
            status = s.request("POST", "/login", _form(password="correct horse"),
                               source="127.0.0.2")[0]
            return status, time.monotonic() - t0
        t0 = time.monotonic()
        with ThreadPoolExecutor(9) as pool:
            mine = pool.submit(owner)
            done = list(pool.map(guess, range(8)))
            signed = mine.result()
        turned = [t for st, _, t in done if st == 429]
        waited = [t for st, _, t in done if st != 429]
        assert turned and len(waited) >= 2 and all(  # (a late thread may find a free place)
            st == wrong for st, wrong, _ in done if st != 429), done
        assert max(waited) >= len(waited) * 1.0, done  # one at a time
        assert signed[0] == 303 and signed[1] < len(waited) + 1.5, (signed, done)
        # a HEAD of the sign-in page is no guess
        assert s.request("HEAD", "/login")[0] == 200
    finally:
        assert s.stop() == 0, s.log.read_text()


def test_a_bearer_token_is_the_secret_as_a_client_sends_it() -> None:
    """HTTP headers arrive as latin-1 text; a client sends the secret's UTF-8 bytes."""
    import asyncio

    from tagger.web.app import Turns, bearer_token
    sent = "pässwörd 12345".encode().decode("latin-1")  # as the server decodes the header
    token = bearer_token(f"Bearer {sent}")
    assert token == "pässwörd 12345".encode() and bearer_token("Basic eDp5") is None
    assert asyncio.run(Turns().check(token, "pässwörd 12345", "127.0.0.1")) is True


# --- corrections -----------------------------------------------------------------------------


def test_corrections_are_written_safely_and_become_the_persons_labels(
        library: tuple[Path, Path], tmp_path: Path, engine: Any) -> None:
    root, db = library
    ids = _ids(db)
    flac, ogg, mp3 = root / "Night" / "01.flac", root / "Night" / "02.ogg", root / "Loose" / "a.mp3"
    ours = read_genres(mp3)
    assert ours == _row(db, "a.mp3")["written"]
    title_before = mutagen.File(flac)["title"]
    with serving(root, f"sqlite:///{db}", tmp_path) as s:
        _, _, page = s.request("GET", f"/track/{ids['01.flac']}")
        token = _token(page)
        seen = json.dumps(read_genres(flac))
        mtime = flac.stat().st_mtime_ns
        # replace: written like a scan's write, recorded as the person's
        status, _, body = s.request("POST", f"/track/{ids['01.flac']}/genres", _form(
            csrf=token, action="replace", genres="Tango; Polka; tango", **{f"seen-{ids['01.flac']}": seen}))
        assert status == 200 and b"corrected" in body
        assert read_genres(flac) == ["Tango", "Polka"]
        assert mutagen.File(flac)["title"] == title_before  # nothing else about the file changed
        assert flac.stat().st_mtime_ns != mtime  # players see it changed
        row = _row(db, "01.flac")
        assert row["key"] == CORRECTED and row["written"] is None and row["seen"] == ["Tango", "Polka"]
        assert person_genres(read_genres(flac), row["written"], row["before"]) == ["Tango", "Polka"]
        assert query(db, "SELECT COUNT(*) FROM intents") == [(0,)]
        # a page drawn before another program changed the genres writes nothing
        _, _, page = s.request("GET", f"/track/{ids['02.ogg']}")
        stale = json.dumps(read_genres(ogg))
        f = mutagen.File(ogg)
        f["genre"] = ["Changed Elsewhere"]
        f.save()
        status, _, body = s.request("POST", f"/track/{ids['02.ogg']}/genres", _form(
            csrf=token, action="replace", genres="Tango", **{f"seen-{ids['02.ogg']}": stale}))
        assert status == 200 and b"changed since the page showed them" in body
        assert read_genres(ogg) == ["Changed Elsewhere"]
        # accept: ours become the person's, the file is not touched
        data = mp3.read_bytes()
        status, _, body = s.request("POST", f"/track/{ids['a.mp3']}/genres", _form(
            csrf=token, action="accept", **{f"seen-{ids['a.mp3']}": json.dumps(ours)}))
        assert status == 200 and mp3.read_bytes() == data
        row = _row(db, "a.mp3")
        assert row["key"] == CORRECTED and row["written"] is None
        assert person_genres(ours, row["written"], row["before"]) == ours
        # the album: every track at once, each checked against what the page showed it carry
        f = mutagen.File(ogg)
        f["genre"] = ["Changed Elsewhere"]
        f.save()
        _, _, page = s.request("GET", f"/track/{ids['01.flac']}")
        seen_fields = {k: html.unescape(v) for k, v in
                       re.findall(r"name=\"(seen-\d+)\" value='([^']*)'", page.decode())}
        assert len(seen_fields) == 2
        status, _, body = s.request("POST", f"/track/{ids['01.flac']}/genres", _form(
            csrf=token, action="replace", scope="album", genres="Bolero", **seen_fields))
        assert status == 200
        assert read_genres(flac) == ["Bolero"] and read_genres(ogg) == ["Bolero"]
        # a case is a correction too: written, not taken as the same
        status, _, body = s.request("POST", f"/track/{ids['01.flac']}/genres", _form(
            csrf=token, action="replace", genres="bolero", **{f"seen-{ids['01.flac']}": '["Bolero"]'}))
        assert status == 200 and read_genres(flac) == ["bolero"]
        # a file another process (a daemon, a scan) is working on is not raced: busy, untouched
        with Cache(f"sqlite:///{db}") as other:
            assert WorkQueue(other).claim([str(flac)], "changed") == {str(flac)}
            status, _, body = s.request("POST", f"/track/{ids['01.flac']}/genres", _form(
                csrf=token, action="replace", genres="Tango", **{f"seen-{ids['01.flac']}": '["bolero"]'}))
            assert status == 200 and b"busy" in body and read_genres(flac) == ["bolero"]
            WorkQueue(other).release(drop="changed")
        status, _, body = s.request("POST", f"/track/{ids['01.flac']}/genres", _form(
            csrf=token, action="replace", genres="Bolero", **{f"seen-{ids['01.flac']}": '["bolero"]'}))
        assert status == 200 and read_genres(flac) == ["Bolero"]
        assert query(db, "SELECT COUNT(*) FROM queue") == [(0,)]  # the page's claims are gone
    # no front door changes a person's genres: a scan (overwrite policy too) leaves them
    with Cache(f"sqlite:///{db}") as cache:
        scanner(root, cache, engine, policy="overwrite", retag_reverted=True).run()
    assert read_genres(flac) == ["Bolero"] and read_genres(mp3) == ours


def test_revert_a_file_and_an_album(library: tuple[Path, Path], tmp_path: Path) -> None:
    root, db = library
    ids = _ids(db)
    mp3 = root / "Loose" / "a.mp3"
    with serving(root, f"sqlite:///{db}", tmp_path) as s:
        token = _token(s.request("GET", f"/track/{ids['a.mp3']}")[2])
        status, _, body = s.request("POST", f"/track/{ids['a.mp3']}/genres",
                                    _form(csrf=token, action="revert"))
        assert status == 200 and b"reverted" in body
        assert read_genres(mp3) == [] and _row(db, "a.mp3")["key"] == REVERTED
        status, _, body = s.request("POST", f"/track/{ids['02.ogg']}/genres",
                                    _form(csrf=token, action="revert", scope="album"))
        assert status == 200
        assert read_genres(root / "Night" / "01.flac") == [] == read_genres(root / "Night" / "02.ogg")
        assert read_genres(root / "Theirs" / "p.ogg") == ["Polka"]  # not ours: untouched


@pytest.mark.parametrize("fault", ["after-intent", "after-rename"])
def test_a_correction_killed_mid_write_is_settled_as_the_persons(
        library: tuple[Path, Path], fault: str) -> None:
    """SIGKILLed between the steps of the write: the file holds either its genres or the
    person's, and the next start records which (never as genre-tagger's own)."""
    root, db = library
    mp3 = root / "Loose" / "a.mp3"
    ours = read_genres(mp3)
    script = (f"from tagger.cache import Cache\nfrom tagger.library.tagging import correct\n"
              f"from tagger.tags import TagOptions\n"
              f"c = Cache({f'sqlite:///{db}'!r})\nrow = c.get({str(mp3)!r})\n"
              f"correct(row, ['Tango'], {ours!r}, c, TagOptions(), ({str(root)!r},))\n")
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO),
                                                            "GENRE_TAGGER_FAULT": fault},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr
    with Cache(f"sqlite:///{db}") as cache:
        assert len(cache.intents()) == 1
        finish_interrupted_writes(cache, TagOptions())
        assert cache.intents() == []
        row = cache.get(str(mp3))
    assert row is not None
    if fault == "after-intent":
        assert read_genres(mp3) == ours and row.genres_written == ours  # still ours, as before
    else:
        assert read_genres(mp3) == ["Tango"]
        assert row.decision_key == CORRECTED and row.genres_written is None


# --- a real browser ----------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/usr/bin/chromedriver").exists() and shutil.which("chromedriver") is None,
                    reason="needs chromium-driver (apt install chromium chromium-driver)")
def test_see_listen_correct_and_revert_in_a_real_browser(library: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    root, db = library
    ids = _ids(db)
    flac, mp3 = root / "Night" / "01.flac", root / "Loose" / "a.mp3"
    with serving(root, f"sqlite:///{db}", tmp_path) as s, browser() as b:
        b.get(s.base + "/")
        assert b.title == "genre-tagger"
        assert "Genres people set" in b.find_element(By.ID, "theirs").text
        b.find_element(By.LINK_TEXT, "Decisions").click()
        assert wait_for(lambda: "of 4" in b.find_element(By.ID, "range").text)
        b.find_element(By.LINK_TEXT, "Night/01.flac").click()
        assert wait_for(lambda: b.current_url.endswith(f"/track/{ids['01.flac']}"))
        # play: the media element reports progress through the file served with ranges
        b.execute_script("document.getElementById('player').play()")
        assert wait_for(lambda: b.execute_script(
            "return document.getElementById('player').currentTime") > 0.5), \
            b.execute_script("var p = document.getElementById('player'); "
                             "return [p.error && p.error.message, p.readyState, p.networkState]")
        # a window that decided: the player jumps there
        seek = b.find_elements(By.CSS_SELECTOR, "a.seek")[-1]
        at = float(seek.get_attribute("data-seek"))
        seek.click()
        assert wait_for(lambda: abs(b.execute_script(
            "return document.getElementById('player').currentTime") - at) < 1.5)
        assert b.current_url.endswith(f"/track/{ids['01.flac']}")  # stayed on the page
        b.execute_script("document.getElementById('player').pause()")
        shots = Path(os.environ.get("GENRE_TAGGER_SCREENSHOTS", tmp_path))
        b.save_screenshot(str(shots / "web-track.png"))
        assert (shots / "web-track.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # correct: the genres typed, in the person's words
        field = b.find_element(By.ID, "genres-input")
        field.clear()
        field.send_keys("Tango; Milonga")
        b.find_element(By.ID, "replace").click()
        assert wait_for(lambda: "Genres set" in b.find_element(By.TAG_NAME, "h1").text)
        assert "corrected" in b.find_element(By.ID, "outcomes").text
        assert read_genres(flac) == ["Tango", "Milonga"]
        assert _row(db, "01.flac")["key"] == CORRECTED
        b.find_element(By.ID, "back").click()
        assert wait_for(lambda: "Tango; Milonga" in b.find_element(By.ID, "now").text)
        assert "a person set its genres" in b.find_element(By.ID, "decision").text
        # revert another: back to what it had before us
        b.get(f"{s.base}/track/{ids['a.mp3']}")
        b.find_element(By.ID, "revert").click()
        assert wait_for(lambda: "Reverted" in b.find_element(By.TAG_NAME, "h1").text)
        assert read_genres(mp3) == [] and _row(db, "a.mp3")["key"] == REVERTED
        b.get(s.base + "/decisions?reason=corrected")
        assert "of 1" in b.find_element(By.ID, "range").text
        b.get(s.base + "/")
        assert "Milonga" in b.find_element(By.ID, "theirs").text  # now a person's genre


# --- the daemon's page -------------------------------------------------------------------------


def test_the_daemon_serves_the_page_when_listen_is_set(library: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    root, db = library
    port = free_port()
    d = Daemon(root, db, tmp_path / "daemon.log", "--listen", f"127.0.0.1:{port}")
    assert wait_for(lambda: answers(port), 30)
    from pages import Served

    page = Served(d.proc, port, d.log)
    assert wait_for(lambda: b"<b>running</b>" in page.request("GET", "/")[2], 30)
    # another process on the same address: said in words, nothing started
    out = subprocess.run([sys.executable, "-m", "tagger", "serve", str(root), "--db",
                          f"sqlite:///{db}", "--listen", f"127.0.0.1:{port}"],
                         env=env_for(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "in use" in out.stderr
    assert d.stop() == 0
    assert not answers(port)


# --- paging a large cache ----------------------------------------------------------------------


def test_a_50000_track_cache_is_paged_and_filtered(tmp_path: Path) -> None:
    """The figures go to the closing note (bench/bench_page.py measures them against the
    cache without the v8 indexes); here: every page is right."""
    root = tmp_path / "music"
    root.mkdir()
    db = tmp_path / "big.sqlite"
    fill(f"sqlite:///{db}", 50_000, str(root))
    with serving(root, f"sqlite:///{db}", tmp_path) as s:
        for warm in ("/decisions?offset=1", "/"):  # the templates compiled, a connection open
            assert s.request("GET", warm)[0] == 200
        timings = {}
        for name, target, total in [
                ("first page", "/decisions", 50_000),
                ("page 500", "/decisions?offset=24950", 50_000),
                ("written, recent", "/decisions?reason=written&order=recent", None),
                ("genre Tango", "/decisions?genre=Tango", None),
                ("one folder", f"/decisions?folder={quote(str(root / 'Artist 007'))}", 200),
                ("failures", "/decisions?reason=failed&error=corrupt", None),
                ("library", "/", None)]:
            t0 = time.perf_counter()
            status, _, body = s.request("GET", target)
            timings[name] = (time.perf_counter() - t0) * 1000
            assert status == 200, (target, body[:500])
            if total is not None:
                assert f"of {total} (" in body.decode(), target
            if target.startswith("/decisions"):
                assert body.count(b'<tr class="') == min(50, total or 50)
        # failures (no scores) first, then the least confident
        failed = query(db, "SELECT COUNT(*) FROM tracks WHERE status = 'failed'")[0][0]
        assert s.request("GET", "/decisions")[2].count(b'<tr class="failed">') == 50
        body = s.request("GET", f"/decisions?offset={failed}")[2].decode()
        first = [float(x) for x in re.findall(r"<td>(\d\.\d\d)</td>", body)]
        lowest = query(db, "SELECT MIN(confidence) FROM tracks WHERE confidence IS NOT NULL")[0][0]
        assert len(first) == 50 and first == sorted(first) and abs(first[0] - lowest) < 0.006
        print("\n" + "\n".join(f"{k:<18} {v:7.1f} ms" for k, v in timings.items()))


# --- the pure parts ------------------------------------------------------------------------------


def test_typed_genres_are_parsed_in_the_persons_words() -> None:
    from tagger.web.views import MAX_GENRES, parse_genres

    assert parse_genres(" Tango ;Jazz\n tango;; Folk, World, & Country ") == \
        ["Tango", "Jazz", "Folk, World, & Country"]
    assert parse_genres("") == [] == parse_genres(" ; \n ")
    for bad in ("Rock\x1b[31m", "x" * 81, "; ".join(f"G{i}" for i in range(MAX_GENRES + 1))):
        with pytest.raises(ValueError):
            parse_genres(bad)


def test_which_addresses_and_hosts_are_this_machine() -> None:
    from tagger.settings import loopback, parse_listen
    from tagger.web.app import _loopback_host

    assert parse_listen("127.0.0.1:8337") == ("127.0.0.1", 8337)
    assert parse_listen("[::1]:80") == ("::1", 80)
    for bad in ("8337", "host:", "host:0", "host:70000", ":80", "a b:80", "/tmp/sock:1"):
        assert parse_listen(bad) is None, bad
    assert loopback("127.0.0.1:1") and loopback("127.9.9.9:1") and loopback("[::1]:1")
    assert loopback("localhost:1")
    assert not loopback("0.0.0.0:1") and not loopback("192.168.1.2:1") and not loopback("nas:1")
    for host in ("127.0.0.1:8337", "localhost", "LOCALHOST:80", "[::1]:8337", "127.0.0.1"):
        assert _loopback_host(host), host
    for host in ("evil.example", "127.0.0.1.nip.io:80", "", "[::1", "0.0.0.0:80", "192.168.1.2"):
        assert not _loopback_host(host), host


def test_listening_beyond_this_machine_without_a_secret_is_refused_at_load() -> None:
    from tagger.errors import ConfigError
    from tagger.settings import build_settings

    with pytest.raises(ConfigError, match="web_secret"):
        build_settings({"listen": "0.0.0.0:8337"}, {"listen": "/etc/genre-tagger/config.toml"})
    with pytest.raises(ConfigError, match="HOST:PORT"):
        build_settings({"listen": "8337"})
    with pytest.raises(ConfigError, match="12 characters"):
        build_settings({"listen": "0.0.0.0:8337", "web_secret": "short"})
    assert build_settings({"listen": "0.0.0.0:8337",
                           "web_secret": "a long secret"}).listen == "0.0.0.0:8337"
    assert build_settings({"listen": "127.0.0.1:8337"}).web_secret == ""


def test_the_timeline_drawing_marks_the_windows_that_decided() -> None:
    from tagger.library.timeline import Timeline
    from tagger.web.views import drawing

    times = [1.5 + 3 * i for i in range(10)]
    rock = [0.1, 0.2, 0.9, 0.3, 0.8, 0.1, 0.7, 0.1, 0.2, 0.1]
    t = Timeline(times, {"Rock": rock, "Jazz": [0.5] * 10}, [("Rock", 0.4)], "m", "cache", "window")
    d = drawing(t, width=300, height=100)
    assert [s for s, _ in d.decisive] == [6.0, 12.0, 18.0]  # the three strongest, in time order
    assert [line.genre for line in d.lines] == ["Rock", "Jazz"] and d.lines[0].chosen
    first = d.lines[0].points.split()[0].split(",")
    assert float(first[1]) == pytest.approx(90.0)  # 0.1 from the bottom of 100
    assert d.ticks[0] == (0.0, "0:00") and d.duration == pytest.approx(30.0, abs=0.01)
    six_hours = Timeline([1.5 + 3 * i for i in range(7200)], {"Rock": [0.5] * 7200},
                         [("Rock", 0.5)], "m", "cache", "window")
    assert len(drawing(six_hours).ticks) <= 12  # an audiobook, a DJ mix: ticks every hour
