"""Whether and how to change a file's genres: pure decisions, no I/O.

Three policies, after beets' ``lastgenre`` (force / keep_existing):

* ``missing`` (default): only files with no genre get ours;
* ``merge``: the genres the file had before us are kept, ours follow them;
* ``overwrite``: ours replace whatever is there.

Genres a person set are never confused with ours: the cache remembers what we last wrote. When
the file no longer holds exactly that, a person has edited it since, and ``missing`` and
``merge`` leave it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tagger.analysis.taxonomy import Selection
    from tagger.tags.base import TagOptions

Policy = Literal["missing", "merge", "overwrite"]
POLICIES: tuple[Policy, ...] = ("missing", "merge", "overwrite")


#: One word for summaries: why a file was or was not written (``edited-since``: revert's;
#: ``wait-album``: the daemon waits for the rest of the file's album to arrive).
Why = Literal["write", "keep-user", "has-genre", "abstain", "same", "edited-since", "wait-album",
              "reverted", "corrected"]


#: Each decision in words, for people: why a file was left as it was (or what we did).
IN_WORDS: dict[Why, str] = {
    "write": "genre-tagger wrote its genres",
    "keep-user": "left alone: a person changed the genres genre-tagger wrote, and the policy "
                 "keeps a person's genres",
    "has-genre": "left alone: it has genres of its own, and the policy ('missing') writes only "
                 "files without",
    "abstain": "left alone: no genre scored at least the minimum confidence",
    "same": "left alone: it already carries these genres",
    "edited-since": "left alone: its genres changed after genre-tagger wrote them",
    "wait-album": "waiting: more of its album may still arrive",
    "reverted": "left alone: you put its genres back ('revert'); 'scan --retag-reverted' "
                "tags it again",
    "corrected": "left alone: a person set its genres in the page (their label for training)",
}


@dataclass(frozen=True)
class Decision:
    new: list[str] | None  # what to write; None = leave the file as it is
    why: Why


def same_genres(a: list[str], b: list[str]) -> bool:
    """Equal as genre lists: same order, case aside."""
    return [x.casefold() for x in a] == [x.casefold() for x in b]


def _union(first: list[str], then: list[str], key: Callable[[str], str]) -> list[str]:
    seen = {key(g) for g in first}
    return first + [g for g in then if key(g) not in seen]


def decide(current: list[str], predicted: list[str], policy: Policy,
           written: list[str] | None = None, before: list[str] | None = None,
           force: bool = False, key: Callable[[str], str] = str.casefold) -> Decision:
    """The genres to write given the file's ``current`` genres and our ``predicted`` ones.

    ``written`` is what we last wrote to this file (None: never), ``before`` what it held before
    our first write. ``force`` (beets' ``-f``) treats a person's edit of our genres like genres
    they set before us: ``merge`` then keeps theirs and adds ours (lastgenre's keep_existing).
    ``key``: when two names are one genre (the genre map's aliases: a file's "hiphop" and our
    "Hip Hop" are not written twice by ``merge``).
    """
    if not predicted:
        return Decision(None, "abstain")
    ours_untouched = written is not None and same_genres(current, written)
    if written is not None and not ours_untouched and policy != "overwrite" and not force:
        return Decision(None, "keep-user")
    if policy == "overwrite":
        new = list(predicted)
    elif policy == "missing":
        if current and not ours_untouched:
            return Decision(None, "has-genre")
        new = list(predicted)
    else:  # merge: the user's own genres first, then ours
        users = (before or []) if ours_untouched else current
        new = _union(list(users), predicted, key)
    if same_genres(new, current):
        return Decision(None, "same")
    return Decision(new, "write")


def decision_key(policy: Policy, selection: Selection, tags: TagOptions, version: str,
                 album: bool) -> str:
    """What a decision depends on besides the scores: stored with each decision, so a file
    decided under the same key is settled, and a changed setting is a new decision. The map and
    album mode are added only when set, so a cache decided without them stays settled."""
    extra = "".join([f"|map:{fp}" if (fp := selection.genres.fingerprint()) else "",
                     "|album" if album else ""])
    return (f"{policy}|{selection.top_k}|{selection.min_confidence}|{selection.relative}|"
            f"{tags.id3_version}|{tags.id3v23_separator}|{version}{extra}")
