"""Decode any audio file to 16 kHz mono float32, in a separate process, never writing to it.

ffmpeg (a pipe, resampling with soxr) is the main decoder: measured here it takes about half the
time of ``librosa.load``, and as a child process a hostile file that crashes or hangs it cannot
take us down. libsndfile (soundfile + soxr, also in a child process) is the fallback for files
ffmpeg rejects but libsndfile reads (ffmpeg 5.1 fails some Ogg Vorbis headers that libvorbis
accepts). For budget mode, :func:`decode_segments` seeks and decodes only the parts analysed.

Full decodes are streamed (:func:`decode_stream`): the decoder's output is handed on in chunks,
so what a caller keeps (log-mel frames, not audio) bounds the memory, whatever the file's length.

The package: :mod:`.children` (finding ffmpeg, running and streaming decoder children, their
messages), :mod:`.probe` (what the headers declare), :mod:`.full` (whole-file decodes and how
they are judged), :mod:`.segments` (only the windows' segments).
"""

from tagger.analysis.decode.children import check_decoder, decoder_version
from tagger.analysis.decode.full import decode, decode_stream
from tagger.analysis.decode.probe import Probe, check_readable, probe
from tagger.analysis.decode.segments import SegmentReader, decode_segments

__all__ = [
    "Probe",
    "SegmentReader",
    "check_decoder",
    "check_readable",
    "decode",
    "decode_segments",
    "decode_stream",
    "decoder_version",
    "probe",
]
