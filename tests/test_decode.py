"""Every decode error, on real bad files; decoding never writes to the file."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FORMATS, ffmpeg_encode, music_like

from tagger.analysis.config import EngineConfig
from tagger.analysis.decode import check_decoder, decode, decode_segments
from tagger.analysis.decode.children import run
from tagger.analysis.engine import Engine, Failure
from tagger.analysis.extract import extract_windows
from tagger.analysis.features import SAMPLE_RATE, plan_windows
from tagger.errors import (
    AudioError,
    CorruptAudio,
    DecoderCrashed,
    DecoderMissing,
    DecodeTimeout,
    EmptyAudio,
    EnvironmentProblem,
    MissingFile,
    NoPermission,
    NotAudio,
    SilentAudio,
    TooShort,
    TruncatedAudio,
)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("good")
    pcm = music_like(20.0, seed=1)
    return {"mp3": ffmpeg_encode(pcm, 44_100, d / "good.mp3", FORMATS["mp3"][1]),
            "flac": ffmpeg_encode(pcm, 44_100, d / "good.flac", FORMATS["flac"][1]),
            "wav": ffmpeg_encode(pcm, 44_100, d / "good.wav", FORMATS["wav"][1])}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_decodes_to_16k_mono(audio_files: dict[str, Path], name: str) -> None:
    audio = decode(audio_files[name])
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - 13.0) < 0.1  # encoder padding trimmed within 100 ms
    assert 0.2 < np.abs(audio).max() <= 1.01


@pytest.mark.parametrize("channels", [1, 2])
def test_ffmpeg_and_libsndfile_agree(good: dict[str, Path], tmp_path: Path, channels: int) -> None:
    f = good["flac"]
    if channels == 2:  # sides that differ: the mix to mono must be ffmpeg's (-3 dB each)
        f = tmp_path / "stereo.flac"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(good["flac"]), "-filter_complex",
                        "[0:a]asplit[a][b];[b]adelay=300,volume=0.6[c];[a][c]join=inputs=2", str(f)],
                       check=True)
    out = subprocess.run([sys.executable, "-m", "tagger.analysis.sndfile_child", str(f),
                          str(SAMPLE_RATE)], capture_output=True, check=True).stdout
    fallback = np.frombuffer(out, np.float32)
    main = decode(f)
    assert len(fallback) == len(main)
    assert np.abs(fallback - main).max() < 0.01  # two soxr builds, same signal


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFile, match="no such file"):
        decode(tmp_path / "gone.mp3")


def test_no_permission(good: dict[str, Path], tmp_path: Path) -> None:
    locked = tmp_path / "locked.flac"
    shutil.copy(good["flac"], locked)
    locked.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(NoPermission, match="permission denied"):
            decode(locked)
        return
    # root reads anything: drop the capabilities that let it, and run the same code path.
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv")
    code = ("from tagger.analysis.decode import decode\nfrom tagger.errors import NoPermission\n"
            f"try:\n    decode({str(locked)!r})\nexcept NoPermission as e:\n    print(e.code, e)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    caps = "-dac_override,-dac_read_search"
    out = subprocess.run(["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}",
                          sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.startswith("permission"), out.stderr


@pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 20,
                                     np.random.default_rng(0).bytes(50_000)],
                         ids=["text", "random-bytes"])
def test_not_audio(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "fake.mp3"
    f.write_bytes(content)
    with pytest.raises(NotAudio) as e:
        decode(f)
    assert str(f) in str(e.value)


def test_an_image_is_not_audio(tmp_path: Path) -> None:
    png = tmp_path / "cover.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32",
                    "-frames:v", "1", "-f", "image2", "-c:v", "png", str(png)], check=True)
    with pytest.raises(NotAudio):
        decode(png)


def test_directory_and_fifo_are_not_audio(tmp_path: Path) -> None:
    with pytest.raises(NotAudio, match="directory"):
        decode(tmp_path)
    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    with pytest.raises(NotAudio, match="regular file"):  # would block forever if opened
        decode(fifo)


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.flac"
    f.touch()
    with pytest.raises(EmptyAudio, match="0 bytes"):
        decode(f)


def test_zero_length_audio(tmp_path: Path) -> None:
    f = tmp_path / "zero.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=44100", "-t", "0",
                    str(f)], check=True)
    with pytest.raises(EmptyAudio, match="zero length"):
        decode(f)


def test_truncated_mp3(good: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "half.mp3"
    f.write_bytes(good["mp3"].read_bytes()[:40_000])
    with pytest.raises(TruncatedAudio, match="truncated"):
        decode(f)


def test_truncated_flac_is_corrupt(good: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "cut.flac"
    f.write_bytes(good["flac"].read_bytes()[:60_000])
    with pytest.raises((CorruptAudio, TruncatedAudio)):
        decode(f)


def test_corrupt_frames(good: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(good["mp3"].read_bytes())
    rng = np.random.default_rng(1)
    for i in range(2000, len(data), 40):
        data[i] = int(rng.integers(256))
    f = tmp_path / "noisy.mp3"
    f.write_bytes(bytes(data))
    with pytest.raises((CorruptAudio, TruncatedAudio)) as e:
        decode(f)
    assert "decoded" in e.value.reason


def test_timeout_stops_the_decoder(good: dict[str, Path]) -> None:
    with pytest.raises(DecodeTimeout, match="longer than"):
        decode(good["flac"], timeout=0.001)


def test_a_crashing_decoder_does_not_take_us_down(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with pytest.raises(DecoderCrashed, match="SIGSEGV"):
        run(crash, tmp_path / "x.mp3", 10)


def test_silent_and_tiny_files(tmp_path: Path) -> None:
    cfg = EngineConfig(budget=None)
    silent = ffmpeg_encode(np.zeros(44_100 * 5), 44_100, tmp_path / "silent.flac", ["-c:a", "flac"])
    with pytest.raises(SilentAudio):
        extract_windows(silent, cfg)
    tiny = ffmpeg_encode(music_like(0.3), 44_100, tmp_path / "tiny.wav", ["-c:a", "pcm_s16le"])
    with pytest.raises(TooShort, match=r"0\.30 s"):
        extract_windows(tiny, cfg)


def test_short_track_is_analysed_with_one_window(tmp_path: Path) -> None:
    f = ffmpeg_encode(music_like(1.5), 44_100, tmp_path / "short.flac", ["-c:a", "flac"])
    assert extract_windows(f, EngineConfig(budget=None)).windows.shape == (1, 187, 96)


def test_budget_decodes_only_segments_and_matches_full_decode(good: dict[str, Path]) -> None:
    full = extract_windows(good["flac"], EngineConfig(budget=None, window_hop=93))
    seeked = extract_windows(good["flac"], EngineConfig(budget=3, window_hop=93))
    assert seeked.seeked and seeked.windows.shape == (3, 187, 96)
    assert not full.seeked and full.windows.shape == (12, 187, 96)
    # Each seeked window equals the full decode's window at the same place (resampler edges
    # and seek granularity aside).
    n_samples = len(decode(good["flac"]))
    all_starts = plan_windows(n_samples, hop=93).starts
    for k, start in enumerate(plan_windows(n_samples, hop=93, budget=3).starts):
        i = all_starts.index(start)
        assert np.abs(seeked.windows[k] - full.windows[i]).mean() < 0.01


def test_segments_past_the_end_of_a_truncated_file_fall_back(good: dict[str, Path]) -> None:
    assert decode_segments(good["wav"], [(16_000 * 30, 48_128)]) is None


def test_decoding_never_writes_to_the_file(good: dict[str, Path]) -> None:
    f = good["mp3"]
    before = (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    decode(f)
    extract_windows(f, EngineConfig(budget=2))
    assert (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) == before


# --- issue 9: hard inputs and honest outcomes -----------------------------------------------------

_CHILD = """
import sys
from tagger.analysis.config import EngineConfig
from tagger.analysis.extract import extract_windows
try:
    extract_windows(sys.argv[1], EngineConfig())
except Exception as e:
    print(type(e).__name__, getattr(e, "reason", e))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (pytest, with the
# model loaded), while VmHWM is this program's own peak.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print("peak MB", hwm // 1024)
"""


def _extract_in_child(path: Path) -> tuple[str, int]:
    """extract_windows in a child under a time and memory limit, so that a regression fails the
    test instead of hanging it (a FIFO) or eating the machine (/dev/zero). (message, peak MB)"""
    def limit() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    try:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                             text=True, timeout=60, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"extract_windows({path}) hung")
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stderr
    return lines[0], int(lines[1].split()[-1])


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "/dev/null"])
def test_only_regular_files_are_opened(tmp_path: Path, target: str) -> None:
    """stat before anything opens the file: a FIFO blocked mutagen forever, /dev/zero grew to 24 GB."""
    f = tmp_path / "track.mp3"
    if target == "fifo":
        os.mkfifo(f)
        want = "NotAudio not a regular file: it is a named pipe, not audio"
    else:
        f.symlink_to(target)
        want = "NotAudio not a regular file: it is a character device (through a symlink), not audio"
    message, peak_mb = _extract_in_child(f)
    assert peak_mb < 1024  # nothing was read from the device
    assert message == want


def test_special_files_say_what_they_are(tmp_path: Path) -> None:
    with pytest.raises(NotAudio) as e:
        extract_windows("/dev/null", EngineConfig())
    assert e.value.reason == "not a regular file: it is a character device, not audio"
    sock = tmp_path / "s.flac"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
        with pytest.raises(NotAudio) as e:
            extract_windows(sock, EngineConfig())
    assert e.value.reason == "not a regular file: it is a socket, not audio"


def _m4a(tmp_path: Path) -> bytes:
    f = ffmpeg_encode(music_like(5.0), 44_100, tmp_path / "ok.m4a", FORMATS["m4a-aac"][1])
    data = f.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat") > 0  # ffmpeg writes the index last
    return data


@pytest.mark.parametrize(("name", "keep", "reason"), [
    ("flac", 42, "the FLAC data is damaged (Invalid data found when processing input)"),
    ("flac", 300, "the FLAC data is damaged (End of file)"),
    ("wav", 44, "the WAV container is damaged (no 'data' tag found)"),
])
def test_a_damaged_file_is_named_by_its_content(good: dict[str, Path], tmp_path: Path, name: str,
                                                keep: int, reason: str) -> None:
    f = tmp_path / f"damaged.{name}"
    f.write_bytes(good[name].read_bytes()[:keep] + bytes(3000))
    with pytest.raises(CorruptAudio) as e:
        decode(f)
    assert e.value.reason == reason


@pytest.mark.parametrize("damage", ["cut-off", "overwritten"])
def test_a_damaged_m4a_is_called_damaged_not_not_audio(tmp_path: Path, damage: str) -> None:
    data = _m4a(tmp_path)
    moov = data.find(b"moov") - 4
    f = tmp_path / "damaged.m4a"
    f.write_bytes(data[:moov] if damage == "cut-off" else data[:moov] + bytes(len(data) - moov))
    for call in (lambda: decode(f), lambda: extract_windows(f, EngineConfig())):
        with pytest.raises(CorruptAudio) as e:
            call()
        assert e.value.reason == "the M4A container is damaged (moov atom not found)"
        assert "not an audio file ffmpeg can read (moov atom not found)" not in str(e.value)


def test_a_complete_tenth_of_a_second_is_too_short_not_truncated(tmp_path: Path) -> None:
    """Codec padding made a whole 0.1 s MP3 "truncated: 0.1 s of the declared 0.1 s"."""
    f = ffmpeg_encode(music_like(0.1), 44_100, tmp_path / "blip.mp3", FORMATS["mp3"][1])
    assert len(decode(f)) > 0
    with pytest.raises(TooShort) as e:
        extract_windows(f, EngineConfig())
    assert e.value.reason == "only 0.10 s of audio (at least 1 s is needed)"
    assert "truncated: 0.1 s of the declared 0.1 s" not in e.value.reason


@pytest.mark.parametrize("name", [n for n in FORMATS if n != "wma"])  # WMA never seeks exactly
def test_the_content_not_the_name_decides_the_format(audio_files: dict[str, Path], tmp_path: Path,
                                                     name: str) -> None:
    """A FLAC called .mp3 decodes, and its declared length (from the content) lets budget mode seek."""
    wrong = tmp_path / ("track.flac" if name == "mp3" else "track.mp3")
    shutil.copy(audio_files[name], wrong)
    assert abs(len(decode(wrong)) / SAMPLE_RATE - 13.0) < 0.1
    seeked = extract_windows(wrong, EngineConfig(budget=2))
    assert seeked.seeked and seeked.windows.shape == (2, 187, 96)


@pytest.mark.parametrize("keep", [42, 300], ids=["streaminfo-only", "first-frame-cut"])
def test_a_misnamed_file_ffmpeg_cannot_read_says_the_name_is_wrong(good: dict[str, Path], tmp_path: Path,
                                                                   keep: int) -> None:
    f = tmp_path / "song.mp3"
    f.write_bytes(good["flac"].read_bytes()[:keep] + bytes(2000))
    with pytest.raises(CorruptAudio) as e:
        extract_windows(f, EngineConfig())
    assert e.value.reason.startswith("the extension .mp3 does not match the content (FLAC), and "
                                     "ffmpeg cannot read it (")


def test_no_file_name_or_python_text_in_a_reason(tmp_path: Path) -> None:
    """ffmpeg repeats the file's name, in bytes that may not be UTF-8 or hold a newline: the reason
    must stay one plain line, without the name's pieces or codec errors."""
    folder = tmp_path / os.fsdecode(b"caf\xe9 \xa0")
    folder.mkdir()
    f = folder / "two\nlines.wav"
    f.write_bytes(b"plain text, not music\n" * 50)
    with pytest.raises(NotAudio) as e:
        decode(f)
    assert e.value.reason == "not an audio file ffmpeg can read (Invalid data found when processing input)"
    bad_wav = folder / "x\xa0.wav"
    bad_wav.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt \xff\xff\xff\x7f" + bytes(100))
    with pytest.raises(AudioError) as e2:
        decode(bad_wav)
    assert e2.value.reason == "the WAV container is damaged (Invalid sample rate: 0)"
    for text in (e.value.reason, e2.value.reason):
        assert "\n" not in text and "codec" not in text and "Error" not in text and "\ufffd" not in text


def test_every_reason_is_one_line() -> None:
    assert TruncatedAudio("a.ogg", "the file is\ntruncated:\r\n\tsee\x00here ").reason == \
        "the file is truncated: see here"


def _ogg_pages(data: bytes) -> list[int]:
    starts, pos = [], 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"OggS"
        starts.append(pos)
        n = data[pos + 26]
        pos += 27 + n + sum(data[pos + 27:pos + 27 + n])
    return starts


@pytest.mark.parametrize("name", ["ogg", "opus"])
def test_a_cut_ogg_file_is_truncated_not_complete(good: dict[str, Path], tmp_path: Path,
                                                  name: str) -> None:
    """Ogg declares no length, and mutagen's comes from the last page: a cut file looked whole.
    Cut at every page boundary (no end-of-stream flag) and inside every page (a short page)."""
    src = tmp_path / f"whole.{name}"
    ffmpeg_encode(music_like(20.0, seed=1), 44_100, src, FORMATS[name][1])
    data = src.read_bytes()
    assert extract_windows(src, EngineConfig(budget=None)).windows.shape == (6, 187, 96)
    pages = _ogg_pages(data)
    cuts = [(p, "no-eos") for p in pages[1:]] + [(p + d, "mid-page") for p in pages for d in (13, 40)]
    cuts.append((len(data) - 1, "mid-page"))
    f = tmp_path / f"cut.{name}"
    for cut, how in cuts:
        f.write_bytes(data[:cut])
        for budget in (None, 2):
            with pytest.raises(TruncatedAudio) as e:
                extract_windows(f, EngineConfig(budget=budget))
            r = e.value.reason
            assert re.match(r"the file is truncated: (its audio stops after \d+\.\d s|it stops before "
                            r"any audio), ", r), (cut, r)
            if how == "no-eos":
                assert r.endswith(", without the end-of-stream mark that ends every complete Ogg file")
            else:
                assert r.endswith(", part-way through a block of data (the last Ogg page is cut short)")
    f.write_bytes(data[:pages[len(pages) // 2]])
    with pytest.raises(TruncatedAudio, match=r"^.*: the file is truncated: its audio stops after \d+\.\d s,"):
        decode(f)


# --- the machine's problems are not the file's ----------------------------------------------------


def test_no_ffmpeg_on_path(tmp_path: Path, good: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for call in (check_decoder, lambda: decode(good["flac"]),
                 lambda: extract_windows(good["flac"], EngineConfig(budget=2))):
        with pytest.raises(EnvironmentProblem) as e:
            call()
        assert isinstance(e.value, DecoderMissing) and not isinstance(e.value, AudioError)
        assert str(e.value) == "ffmpeg was not found on PATH; install it (e.g. apt install ffmpeg)"


def _broken_ffmpeg(tmp_path: Path) -> Path:
    folder = tmp_path / "broken-bin"
    folder.mkdir()
    fake = folder / "ffmpeg"
    fake.write_text("#!/bin/sh\necho 'ffmpeg: error while loading shared libraries: libavdevice.so.59: "
                    "cannot open shared object file: No such file or directory' >&2\nexit 1\n")
    fake.chmod(0o755)
    return fake


def test_a_broken_ffmpeg_is_not_blamed_on_the_file(tmp_path: Path, good: dict[str, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _broken_ffmpeg(tmp_path)
    monkeypatch.setenv("PATH", str(fake.parent))
    want = (f"ffmpeg is broken: {fake} -version exited with status 1 (ffmpeg: error while loading "
            "shared libraries: libavdevice.so.59: cannot open shared object file: No such file or directory)")
    for call in (check_decoder, lambda: decode(good["flac"]),
                 lambda: extract_windows(good["mp3"], EngineConfig(budget=2))):
        with pytest.raises(EnvironmentProblem) as e:
            call()
        assert str(e.value) == want


def test_the_engine_raises_the_machines_problems_instead_of_failing_each_file(
        engine_full: Engine, good: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A per-file "internal-error" would be cached as the files' fault: the engine stops instead."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DecoderMissing, match=r"^ffmpeg was not found on PATH; install it"):
        list(engine_full.predict_paths([good["flac"], good["mp3"]]))
    monkeypatch.setenv("PATH", str(_broken_ffmpeg(tmp_path).parent))
    with pytest.raises(EnvironmentProblem, match=r"^ffmpeg is broken: \S+/ffmpeg -version exited with"):
        list(engine_full.predict_paths([good["mp3"]]))


@pytest.mark.parametrize(("script", "how"), [
    ("kill -SEGV $$", "-version was killed by SIGSEGV"),
    ("exit 0", "-version exited with status 0"),  # prints nothing: not an ffmpeg
])
def test_other_broken_ffmpegs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, how: str) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem) as e:
        check_decoder()
    assert str(e.value) == f"ffmpeg is broken: {fake} {how}"


def test_an_ffmpeg_that_cannot_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/nonexistent/interpreter\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnvironmentProblem) as e:
        check_decoder()
    assert str(e.value) == f"ffmpeg is broken: {fake} cannot be run (No such file or directory)"


def test_an_internal_error_is_one_plain_line(good: dict[str, Path]) -> None:
    """Our own bug (here: a nonsensical setting) fails the file without Python's message."""
    engine = Engine(EngineConfig(budget=None, device="cpu", max_seconds=float("nan")))
    [result] = list(engine.predict_paths([good["flac"]]))
    assert isinstance(result, Failure) and result.code == "internal-error"
    assert result.reason == "genre-tagger failed unexpectedly on this file (ValueError); please report it"


def test_running_out_of_file_descriptors_is_the_machines_problem(good: dict[str, Path]) -> None:
    code = ("import os, resource, sys\nfrom tagger.analysis.decode import decode\n"
            "from tagger.errors import EnvironmentProblem\n"
            "n = len(os.listdir('/proc/self/fd'))\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1, n + 1))\n"
            "try:\n    decode(sys.argv[1])\nexcept EnvironmentProblem as e:\n    print('machine:', e)\n"
            "except Exception as e:\n    print('file:', type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(good["flac"])], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout == f"machine: cannot start the decoder {shutil.which('ffmpeg')}: Too many open files\n"
