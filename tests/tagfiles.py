"""Real files with rich tags and cover art, and a full snapshot of everything but the genre."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import mutagen
from conftest import music_like
from mutagen.flac import Picture

RICH = {"title": "Señor Test", "artist": "The Fixtures", "album": "Crash Safe", "date": "2024",
        "track": "3/12", "composer": "Ada", "comment": "keep me"}

#: name -> (extension, ffmpeg audio args, can ffmpeg embed cover art)
TAG_FORMATS: dict[str, tuple[str, list[str], bool]] = {
    "mp3-v24": ("mp3", ["-c:a", "libmp3lame", "-q:a", "6", "-id3v2_version", "4"], True),
    "mp3-v23": ("mp3", ["-c:a", "libmp3lame", "-q:a", "6", "-id3v2_version", "3",
                        "-write_id3v1", "1"], True),
    "flac": ("flac", ["-c:a", "flac"], True),
    "ogg": ("ogg", ["-c:a", "libvorbis"], False),
    "opus": ("opus", ["-c:a", "libopus", "-b:a", "64k"], False),
    "m4a": ("m4a", ["-c:a", "aac", "-b:a", "96k"], True),
    "alac": ("m4a", ["-c:a", "alac"], True),
    "wav": ("wav", ["-c:a", "pcm_s16le"], False),
    "aiff": ("aiff", ["-c:a", "pcm_s16be", "-write_id3v2", "1"], False),
    "wma": ("wma", ["-c:a", "wmav2", "-b:a", "96k"], False),
    # Formats people keep that mutagen and ffmpeg both handle (issue 23): Speex, FLAC in Ogg,
    # and 3GPP2's MP4 (which mutagen does not recognise by its name).
    "speex": ("spx", ["-c:a", "libspeex", "-ar", "16000"], False),
    "ogg-flac": ("oga", ["-c:a", "flac", "-f", "ogg"], False),
    "3g2": ("3g2", ["-c:a", "aac", "-b:a", "64k", "-f", "3g2"], False),
}


def make_cover(folder: Path) -> Path:
    png = folder / "cover.png"
    if not png.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=64x64",
                        "-frames:v", "1", str(png)], check=True)
    return png


def make_tagged(folder: Path, name: str, genre: str | None = None, seconds: float = 4.0) -> Path:
    """A real encoded file with rich tags (and cover art, embedded by ffmpeg or mutagen)."""
    ext, args, ffmpeg_cover = TAG_FORMATS[name]
    out = folder / f"{name}.{ext}"
    wav = folder / f"src-{name}.wav"
    pcm = (music_like(seconds) * 32767).astype("<i2")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "s16le", "-ar", "44100", "-ac", "1",
                    "-i", "-", str(wav)], input=pcm.tobytes(), check=True)
    meta = [x for k, v in {**RICH, **({"genre": genre} if genre else {})}.items()
            for x in ("-metadata", f"{k}={v}")]
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(wav)]
    if ffmpeg_cover:
        cmd += ["-i", str(make_cover(folder)), "-map", "0:a", "-map", "1:v", "-c:v", "png",
                "-disposition:v", "attached_pic"]
    subprocess.run([*cmd, *args, *meta, str(out)], check=True)
    wav.unlink()
    if not ffmpeg_cover and ext in ("ogg", "opus", "spx", "oga"):
        f = mutagen.File(out)
        pic = Picture()
        pic.type, pic.mime, pic.data = 3, "image/png", make_cover(folder).read_bytes()
        f["metadata_block_picture"] = [base64.b64encode(pic.write()).decode("ascii")]
        f.save()
    return out


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def ffprobe_genres(path: Path) -> str | None:
    j = ffprobe(path)
    tags = {k.lower(): v for k, v in (j["format"].get("tags") or {}).items()}
    for s in j["streams"]:
        tags.update({k.lower(): v for k, v in (s.get("tags") or {}).items() if k.lower() == "genre"})
    return tags.get("genre")


def stream_md5(path: Path, selector: str) -> str:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", selector, "-c", "copy"
                          if selector.startswith("0:v") else "pcm_s16le", "-f", "md5", "-"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def _mutagen_tags(path: Path) -> dict[str, str]:
    f = mutagen.File(path)
    if f is None or f.tags is None:
        return {}
    out = {}
    for key in f.tags.keys():  # noqa: SIM118 - iterating mutagen tags yields pairs, not keys
        if str(key).lower() in ("tcon", "genre", "\xa9gen", "wm/genre"):
            continue
        value = f.tags[key]
        out[str(key)] = hashlib.sha256(repr(value).encode()).hexdigest()
    return out


def snapshot(path: Path) -> dict[str, Any]:
    """Everything about a file except its genre: tags (two readers), cover art, decoded audio."""
    j = ffprobe(path)
    fmt_tags = {k.lower(): v for k, v in (j["format"].get("tags") or {}).items()
                if k.lower() != "genre"}
    streams = [(s["codec_type"], s["codec_name"], s.get("duration_ts"),
                {k: v for k, v in (s.get("tags") or {}).items() if k.lower() != "genre"})
               for s in j["streams"]]
    return {"ffprobe_tags": fmt_tags, "streams": streams, "mutagen": _mutagen_tags(path),
            "audio_md5": stream_md5(path, "0:a:0"),
            "cover_md5": stream_md5(path, "0:v:0") if any(s[0] == "video" for s in streams) else None,
            "ogg_cover": mutagen.File(path).tags.get("metadata_block_picture")
            if path.suffix in (".ogg", ".opus") else None}
