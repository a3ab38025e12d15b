"""What a file is and where its parts lie, from its bytes: the floor under ``tags/`` (which
writes the genres) and ``analysis/decode`` (which decodes the audio). It imports nothing of
genre-tagger's but :mod:`tagger.errors`, so no arrow runs up.

- :mod:`~tagger.formats.kinds`: the one table of formats: their names, extensions, what reads
  and what tags them, and which extensions a library walk picks up;
- :mod:`~tagger.formats.sniff`: a file's kind from its first bytes, whatever its name (the
  ID3v2 size, the ASF GUIDs, MPEG and ADTS frame headers);
- :mod:`~tagger.formats.chunks`: the RIFF/IFF chunk walker (WAV, AIFF);
- :mod:`~tagger.formats.identity`: the audio identity, a hash of the payload that tag edits do
  not change.
"""
