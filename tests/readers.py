"""What real tag readers see in a file: the libraries and programs players and servers use.

- TagLib (Navidrome's go-taglib, Jellyfin's TagLib#, Kodi, Strawberry): through pytaglib;
- ffprobe (Jellyfin and Emby's fallback, Plex): the format's tags as ffmpeg reports them;
- mediainfo (MediaInfo-based tools);
- mutagen (beets, Quod Libet, Picard);
- a real MPD (``mpd`` from Debian): the genres it lists for the file after a database update.

Each returns a list of the genre values as the reader presents them (a joined string is one
value), or None when the reader is not on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def taglib(path: Path) -> list[str] | None:
    try:
        import taglib as tl
    except ImportError:
        return None
    with tl.File(str(path)) as f:
        return list(f.tags.get("GENRE", []))


def ffprobe(path: Path) -> list[str] | None:
    if shutil.which("ffprobe") is None:
        return None
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_entries",
                          "format_tags:stream_tags", str(path)], capture_output=True, text=True,
                         check=True)
    found = json.loads(out.stdout)
    for tags in [found.get("format", {}).get("tags", {}),
                 *[s.get("tags", {}) for s in found.get("streams", [])]]:
        for key, value in tags.items():
            if key.lower() == "genre":
                return [value]
    return []


def mediainfo(path: Path) -> list[str] | None:
    if shutil.which("mediainfo") is None:
        return None
    out = subprocess.run(["mediainfo", "--Output=JSON", str(path)], capture_output=True,
                         text=True, check=True)
    for track in json.loads(out.stdout)["media"]["track"]:
        if track.get("@type") == "General" and "Genre" in track:
            return [track["Genre"]]
    return []


def mutagen_genres(path: Path) -> list[str] | None:
    from tagger.tags import read_genres

    return read_genres(path)


class Mpd:
    """A real MPD on a music folder (its own socket, database and no audio output)."""

    def __init__(self, music: Path, work: Path) -> None:
        self.socket = str(work / "mpd.sock")
        conf = work / "mpd.conf"
        conf.write_text(f'music_directory "{music}"\ndb_file "{work / "mpd.db"}"\n'
                        f'state_file "{work / "mpd.state"}"\nbind_to_address "{self.socket}"\n'
                        f'log_file "{work / "mpd.log"}"\n'
                        'audio_output {\n type "null"\n name "none"\n}\n')
        self.proc = subprocess.Popen(["mpd", "--no-daemon", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"mpd did not start: {(work / 'mpd.log').read_text()}")
            time.sleep(0.1)

    @staticmethod
    def available() -> bool:
        return shutil.which("mpd") is not None

    def _ask(self, command: str) -> list[str]:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.socket)
            f = s.makefile("rw", encoding="utf-8")
            assert f.readline().startswith("OK MPD")
            f.write(command + "\n")
            f.flush()
            lines = []
            while (line := f.readline().rstrip("\n")) not in ("OK", ""):
                if line.startswith("ACK"):
                    raise RuntimeError(line)
                lines.append(line)
            return lines

    def update(self) -> None:
        self._ask("update")
        deadline = time.monotonic() + 60
        while any(line.startswith("updating_db") for line in self._ask("status")):
            if time.monotonic() > deadline:
                raise RuntimeError("mpd's update did not end")
            time.sleep(0.1)

    def genres(self, name: str) -> list[str]:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        lines = self._ask(f'find "(file == \\"{quoted}\\")"')
        return [line.split(": ", 1)[1] for line in lines if line.startswith("Genre: ")]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
