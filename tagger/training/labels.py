"""Where labels come from: a folder per genre, a CSV, or the genres people set in their tags.

Each source gives :class:`Labelled` files: a path, its genres, and a *group* (the artist, else
the album, else the folder the file came from) that splits keep on one side, so a model is never
tested on an artist it was trained on. Reading is I/O at the edge; what to keep is decided by the
pure :func:`normalise` and :func:`keep_common`.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tagger.analysis.vocabulary import GenreMap
from tagger.errors import LabelError

if TYPE_CHECKING:
    from tagger.cache import Cache


@dataclass(frozen=True)
class Labelled:
    path: str
    genres: tuple[str, ...]
    group: str  # files of one group are never split between train and test


@dataclass(frozen=True)
class LabelSet:
    files: list[Labelled]
    #: Labels left out because too few files carry them: label -> files.
    dropped: dict[str, int]
    #: Lines or files that could not be used, with why (said once, then ignored).
    problems: list[str]
    #: Labels the genre map leaves out (exclude, include): label -> files.
    left_out: dict[str, int] = field(default_factory=dict)
    #: The labels as written, before the map.
    written: frozenset[str] = frozenset()

    @property
    def vocabulary(self) -> list[str]:
        """Every genre name the labels had (as written, and kept, too rare, or left out by the
        map): names a genre map may mention for the model trained on them."""
        return sorted({*self.classes, *self.dropped, *self.left_out, *self.written})

    @property
    def classes(self) -> list[str]:
        return sorted({g for f in self.files for g in f.genres})

    @property
    def multi_label(self) -> bool:
        """Several genres on one file anywhere: the model scores each genre on its own."""
        return any(len(f.genres) > 1 for f in self.files)


def label_key(name: str) -> str:
    """Labels that differ only in case or spacing are one label."""
    return " ".join(name.split()).casefold()


def normalise(files: Iterable[Labelled], genre_map: GenreMap | None = None) -> list[Labelled]:
    """One spelling per label (the most common one as written), no duplicates, no empties;
    with a genre map, your names first (:meth:`GenreMap.labels`: aliases, renames, exclude,
    include, parents implied by a sub-genre)."""
    if genre_map is not None and not genre_map.empty:
        files = [replace(f, genres=genre_map.labels(f.genres)) for f in files]
    files = list(files)
    spellings: dict[str, Counter[str]] = {}
    for f in files:
        for g in f.genres:
            if label_key(g):
                spellings.setdefault(label_key(g), Counter())[" ".join(g.split())] += 1
    # most_common keeps first-seen order among ties: stable across runs on the same input.
    spelling = {k: c.most_common(1)[0][0] for k, c in spellings.items()}
    out = []
    for f in files:
        genres = tuple(dict.fromkeys(spelling[label_key(g)] for g in f.genres if label_key(g)))
        if genres:
            out.append(replace(f, genres=genres))
    return out


def keep_common(files: list[Labelled], min_files: int) -> tuple[list[Labelled], dict[str, int]]:
    """Drop labels carried by fewer than ``min_files`` files (and files left with none)."""
    counts = Counter(g for f in files for g in f.genres)
    rare = {g: n for g, n in counts.items() if n < min_files}
    kept = []
    for f in files:
        genres = tuple(g for g in f.genres if g not in rare)
        if genres:
            kept.append(replace(f, genres=genres))
    return kept, dict(sorted(rare.items(), key=lambda kv: (-kv[1], kv[0])))


def label_set(files: Iterable[Labelled], min_files: int, problems: list[str],
              genre_map: GenreMap | None = None) -> LabelSet:
    # One order whatever the source listed them in (a folder, a CSV, a library): the split and
    # the training batches then depend on the songs alone.
    files = sorted(files, key=lambda f: (f.path, f.genres))
    mapped = normalise(files, genre_map)
    left_out: Counter[str] = Counter()
    if genre_map is not None and not genre_map.empty:
        kept_names = {label_key(g) for f in mapped for g in f.genres}
        for f in files:
            for g in dict.fromkeys(genre_map.canonical(g) for g in f.genres if g.strip()):
                if label_key(g) not in kept_names and not genre_map.writable(g):
                    left_out[g] += 1
    kept, dropped = keep_common(mapped, min_files)
    if len({g for f in kept for g in f.genres}) < 2:
        raise LabelError(
            f"at least two genres with {min_files} or more files each are needed; found "
            + (", ".join(f"{g} ({n})" for g, n in Counter(
                g for f in kept for g in f.genres).most_common()) or "none")
            + (f"; too few files: {', '.join(f'{g} ({n})' for g, n in dropped.items())}"
               if dropped else ""))
    return LabelSet(kept, dropped, problems, dict(left_out.most_common()),
                    frozenset(" ".join(g.split()) for f in files for g in f.genres if g.strip()))


# --- grouping ------------------------------------------------------------------------------------


def _tag(path: str, key: str) -> str | None:
    import mutagen

    try:
        f = mutagen.File(path, easy=True)
    except Exception:  # damaged or foreign files: grouped by folder instead
        return None
    values = (f.tags.get(key) if f is not None and f.tags is not None else None) or []
    value = str(values[0]).strip() if values else ""
    return value or None


def group_of(path: str, label_root: str | None = None, genres: Iterable[str] = ()) -> str:
    """The artist, else the album, else the folder (below the genre folder, if any); a file
    straight inside its genre folder says nothing about its source: it is its own group.
    Without the genre folder (a CSV, a library), a folder named after one of the file's own
    genres is taken for one, so a labels folder listed in a CSV splits as it does given as a
    folder (it put every song of a genre in one group before, on one side of the split)."""
    if artist := _tag(path, "artist"):
        return f"artist:{label_key(artist)}"
    if album := _tag(path, "album"):
        return f"album:{label_key(album)}"
    folder = os.path.dirname(path)
    if label_root is not None and os.path.normpath(folder) == os.path.normpath(label_root):
        return f"file:{path}"
    if label_root is None and label_key(os.path.basename(folder)) in {label_key(g) for g in genres}:
        return f"file:{path}"
    return f"folder:{folder}"


# --- sources -------------------------------------------------------------------------------------


def _audio_files(folder: str) -> Iterator[str]:
    from tagger.library.walk import walk

    for path, _ in walk([folder], clean_temps=False):
        yield path


def from_folder(root: str, min_files: int, genre_map: GenreMap | None = None) -> LabelSet:
    """GTZAN layout: one sub-folder per genre, named after it (deeper folders are fine)."""
    if not os.path.isdir(root):
        raise LabelError(f"{root}: not a folder")
    files = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        for path in _audio_files(entry.path):
            files.append(Labelled(path, (entry.name,), group_of(path, entry.path)))
    if not files:
        raise LabelError(f"{root}: no audio files in sub-folders (one sub-folder per genre, "
                         "named after it)")
    return label_set(files, min_files, [], genre_map)


def from_csv(path: str, min_files: int, genre_map: GenreMap | None = None) -> LabelSet:
    """``path,genres`` rows (``;`` between several genres; paths relative to the CSV's folder);
    a first row ``path,genres`` is a header."""
    base = os.path.dirname(os.path.abspath(path))
    problems: list[str] = []
    files = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise LabelError(f"{path}: cannot read the CSV ({e})") from None
    for n, row in enumerate(rows, 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "genres"]:
            continue
        if len(row) < 2 or not row[0].strip():
            problems.append(f"{path}:{n}: expected 'path,genres'")
            continue
        file = os.path.normpath(os.path.join(base, row[0].strip()))
        # An unquoted comma inside a genre ("Folk, World") splits the row: join it back.
        genres = tuple(g for g in ",".join(row[1:]).split(";") if g.strip())
        if not os.path.isfile(file):
            problems.append(f"{path}:{n}: no such file {file}")
            continue
        if genres:
            files.append(Labelled(file, genres, group_of(file, genres=genres)))
    if not files:
        raise LabelError(f"{path}: no usable rows" + (f" ({problems[0]})" if problems else ""))
    return label_set(files, min_files, problems, genre_map)


def _parts(genres: Iterable[str]) -> list[str]:
    """Genres with joined values taken apart (``Rock, Jazz`` as a program that writes one
    joined value wrote it, beets before 2.7 among them), as keys."""
    return [label_key(p) for g in genres for p in re.split(r"[;,/]", g) if label_key(p)]


def person_genres(current: list[str], written: list[str] | None,
                  before: list[str] | None) -> list[str]:
    """The genres a person set on a file (pure).

    Its genres, unless they are what genre-tagger last wrote (the cache knows; joined or one
    by one), then the ones it held before our first write (``merge`` kept them in front of
    ours; ``missing`` wrote only files without). A person's correction of ours counts, less the
    genres of ours it left in place: correcting the first of "Jazz; Pop; Country" to Tango says
    Tango, not that Pop and Country were right.
    """
    if written is None:
        return list(current)
    if _parts(current) == _parts(written):
        return list(before or [])
    ours = set(_parts(written)) - set(_parts(before or []))
    return [g for g in current if not set(_parts([g])) <= ours]


def from_tags(roots: Iterable[str], cache: Cache, min_files: int,
              genre_map: GenreMap | None = None) -> LabelSet:
    """The genres in the files' tags that a person set (:func:`person_genres`)."""
    from tagger.errors import TagError
    from tagger.tags import TagOptions, read_genres

    files, problems, ours = [], [], 0
    for root in roots:
        if not os.path.isdir(root):
            raise LabelError(f"{root}: not a folder")
        for path in _audio_files(root):
            try:
                genres = read_genres(path, TagOptions())
            except TagError as e:
                problems.append(f"{path}: {e.reason}")
                continue
            if not genres:
                continue
            row = cache.get(path)
            if row is not None:
                genres = person_genres(genres, row.genres_written, row.genres_before)
                if not genres:
                    ours += 1
                    continue
            files.append(Labelled(path, tuple(genres), group_of(path, genres=genres)))
    if ours:
        problems.append(f"{ours} files carry the genres genre-tagger wrote: not used as labels")
    if not files:
        raise LabelError("no file under the roots has genres a person set")
    return label_set(files, min_files, problems, genre_map)


def load_labels(source: str, min_files: int, genre_map: GenreMap | None = None) -> LabelSet:
    """A folder (GTZAN layout) or a CSV file."""
    if os.path.isdir(source):
        return from_folder(source, min_files, genre_map)
    if Path(source).suffix.lower() == ".csv" or os.path.isfile(source):
        return from_csv(source, min_files, genre_map)
    raise LabelError(f"{source}: no such folder or CSV file")
