"""A person's genre vocabulary: the ``[genres]`` table of the config, applied to what a model
says and to the genres read from files. Pure: no I/O, no model.

The models name genres their way (the shipped taxonomy's "Hip-Hop", a trained model's folder
names); a library has its own words. One map, checked once at start, serves every front door:

* ``rename``: a model's genre -> your name for it, one to one (``"Hip-Hop" = "Hip Hop"``).
  Two genres renamed to one name is refused as an accident; merging on purpose is ``aliases``.
* ``aliases``: your name -> other spellings (``"Hip Hop" = ["hiphop", "Rap"]``). Existing tags
  and training labels spelled so are that genre (case aside), and a model genre listed there is
  merged into it (its score: the highest of the merged).
* ``exclude``: never written. ``include``: only these may be written (parents too).
* ``parents``: ``true`` writes a genre's parent after it ("Heavy Metal" brings "Metal", from the
  shipped taxonomy); a table ``{"Bebop" = "Jazz"}`` adds or changes pairs on top of that tree
  (``"Heavy Metal" = ""`` removes one).

Names that will be written must not contain ``/``, ``,`` or ``;`` (players split on them) and
must not be a bare number (ID3 reads "17" as genre number 17).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

SEPARATORS = ("/", ",", ";")
KEYS = ("rename", "aliases", "exclude", "include", "parents")
Scored = list[tuple[str, float]]


def name_key(name: str) -> str:
    """Names that differ only in case or spacing are one genre."""
    return " ".join(name.split()).casefold()


def _tidy(name: str) -> str:
    return " ".join(name.split())


@dataclass(frozen=True)
class GenreMap:
    """The parsed map. Fields are tuples (hashable, ordered as written) so two equal configs are
    equal maps and :meth:`fingerprint` is stable."""

    rename: tuple[tuple[str, str], ...] = ()
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] | None = None
    #: True: the shipped tree; then ``tree`` adds or changes pairs (child -> parent, "" = none).
    parents: bool = False
    tree: tuple[tuple[str, str], ...] = ()
    #: The shipped taxonomy's child -> parent pairs (model names), given by the settings.
    shipped_tree: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    # --- lookups, built once ---------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return not (self.rename or self.aliases or self.exclude or self.include is not None
                    or self.parents)

    @cached_property
    def _renamed(self) -> dict[str, str]:
        return {name_key(old): new for old, new in self.rename}

    @cached_property
    def _alias_of(self) -> dict[str, str]:
        return {name_key(alt): canon for canon, alts in self.aliases for alt in alts}

    @cached_property
    def _finals(self) -> dict[str, str]:
        """Your names (rename targets, alias heads, parents you named): key -> spelling."""
        names = [new for _, new in self.rename] + [c for c, _ in self.aliases]
        names += [p for _, p in self.tree if p]
        return {name_key(n): n for n in names}

    def from_model(self, name: str) -> str:
        """A model genre's name in your vocabulary."""
        renamed = self._renamed.get(name_key(name), name)
        return self._alias_of.get(name_key(renamed), renamed)

    def canonical(self, name: str) -> str:
        """A genre read from a file or a label, in your vocabulary (your own names first, then
        aliases, then a model name you renamed); unknown names keep their spelling."""
        k = name_key(name)
        if k in self._finals:
            return self._finals[k]
        if k in self._alias_of:
            return self._alias_of[k]
        if k in self._renamed:
            new = self._renamed[k]
            return self._alias_of.get(name_key(new), new)
        return _tidy(name)

    def _named(self, names: Iterable[str] | None) -> tuple[frozenset[str], frozenset[str]] | None:
        """What an exclude or include list names: model genres by their own name, and your
        names (a renamed model genre's new name; an alias's member stands for itself, not for
        its whole group)."""
        if names is None:
            return None
        keys = [name_key(n) for n in names]
        return frozenset(keys), frozenset(name_key(self._renamed.get(k, k)) for k in keys)

    @cached_property
    def _excluded(self) -> tuple[frozenset[str], frozenset[str]]:
        return self._named(self.exclude) or (frozenset(), frozenset())

    @cached_property
    def _included(self) -> tuple[frozenset[str], frozenset[str]] | None:
        return self._named(self.include)

    def _passes(self, model: str | None, yours: str) -> bool:
        def named(lists: tuple[frozenset[str], frozenset[str]]) -> bool:
            return (model is not None and model in lists[0]) or yours in lists[1]

        return not named(self._excluded) and (self._included is None or named(self._included))

    def writable(self, name: str) -> bool:
        """May this name (in your vocabulary) be written?"""
        return self._passes(None, name_key(name))

    def allows(self, model_genre: str) -> bool:
        """May this model genre count (named by its own name, or by the name it is written as)?"""
        return self._passes(name_key(model_genre), name_key(self.from_model(model_genre)))

    @cached_property
    def _parent(self) -> dict[str, str]:
        """Your-vocabulary child key -> parent name."""
        out: dict[str, str] = {}
        if self.parents:
            for child, parent in self.shipped_tree:
                out[name_key(self.from_model(child))] = self.from_model(parent)
        for child, parent in self.tree:
            key = name_key(self.canonical(child))
            if parent:
                out[key] = self.canonical(parent)
            else:
                out.pop(key, None)
        return out

    def parents_of(self, name: str) -> list[str]:
        """The chain of parents above ``name`` (nearest first)."""
        chain: list[str] = []
        seen = {name_key(name)}
        while (parent := self._parent.get(name_key(name))) is not None and name_key(parent) not in seen:
            chain.append(parent)
            seen.add(name_key(parent))
            name = parent
        return chain

    # --- applying it -------------------------------------------------------------------------

    def scores(self, genre_scores: Mapping[str, float]) -> dict[str, float]:
        """Model genre scores in your vocabulary: merged genres take the highest score, genres
        that may not be written are left out."""
        out: dict[str, float] = {}
        for name, score in genre_scores.items():
            if self.allows(name):
                mine = self.from_model(name)
                out[mine] = max(out.get(mine, score), score)
        return out

    def pick(self, ranked: Iterable[tuple[str, float]], top_k: int) -> Scored:
        """A chooser's answer (model names, most confident first, only allowed genres) in your
        words: merged names once, at most ``top_k``, then the parents of those."""
        chosen: dict[str, float] = {}
        for name, score in ranked:
            chosen.setdefault(self.from_model(name), score)
        out = list(chosen.items())[:max(top_k, 1)]
        have = {name_key(n) for n, _ in out}
        for name, score in list(out):
            for parent in self.parents_of(name):
                if name_key(parent) not in have and self.writable(parent):
                    out.append((parent, score))
                    have.add(name_key(parent))
        return out

    def labels(self, genres: Sequence[str]) -> tuple[str, ...]:
        """A file's genres as training labels: your names, once each, writable only; a genre
        that is a parent of another of the file's genres is left out (the map writes it back)."""
        mine = list(dict.fromkeys(self.canonical(g) for g in genres if g.strip()))
        mine = [g for g in mine if self.writable(g)]
        implied = {name_key(p) for g in mine for p in self.parents_of(g)}
        return tuple(g for g in mine if name_key(g) not in implied)

    def same(self, name: str) -> str:
        """The key two names are compared by: equal when they name one genre in your words
        (without a map: case aside, as always)."""
        return name_key(self.canonical(name)) if not self.empty else name.casefold()

    def fingerprint(self) -> str:
        """Part of the decision key: a changed map re-decides files from the cache."""
        if self.empty:
            return ""
        tree = sorted(self._parent.items())
        data = [self.rename, self.aliases, self.exclude, self.include, tree]
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:12]

    # --- checking it against a model -----------------------------------------------------------

    def check(self, model_genres: Collection[str], known: Collection[str] = ()) -> None:
        """ValueError naming the first problem: a name the model does not know (with the closest
        names it does), or two of its genres renamed to one. ``known``: more names that are not
        mistakes (genres a trained model's labels had, then left out)."""
        model_keys = {name_key(g): g for g in model_genres}
        yours = {name_key(self.from_model(g)): self.from_model(g) for g in model_genres}
        yours.update({name_key(n): n for n in known})
        yours.update({name_key(p): p for _, p in self.tree if p})  # your own tree's nodes
        words = sorted(set(model_genres) | set(yours.values()))

        def unknown(what: str, name: str) -> ValueError:
            close = difflib.get_close_matches(name, words, n=3, cutoff=0.6)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            return ValueError(f"{what} names {name!r}, which is not a genre of this model{hint}; "
                              f"its genres: {', '.join(sorted(model_genres))}")

        known_keys = {name_key(n) for n in known}
        for old, _ in self.rename:
            if name_key(old) not in model_keys and name_key(old) not in known_keys:
                raise unknown("rename", old)
        by_target: dict[str, list[str]] = {}
        for g in model_genres:
            by_target.setdefault(name_key(self._renamed.get(name_key(g), g)), []).append(g)
        for target, sources in by_target.items():
            if len(sources) > 1:
                name = next(self._renamed.get(name_key(g), g) for g in sources)
                others = ", ".join(f'"{g}"' for g in sorted(sources) if name_key(g) != target)
                raise ValueError(
                    f"rename would write {' and '.join(repr(g) for g in sorted(sources))} all "
                    f"as {name!r}; to merge genres on purpose, list them as aliases of one "
                    f"name: aliases = {{\"{name}\" = [{others}]}}")
        for canon, alts in self.aliases:
            if name_key(canon) in self._renamed:
                raise ValueError(f"aliases names {canon!r}, which rename calls "
                                 f"{self._renamed[name_key(canon)]!r}: use that name")
            if name_key(canon) not in yours and not any(name_key(a) in model_keys for a in alts):
                raise unknown("aliases", canon)
        parents = {name_key(p): p for _, p in self.tree if p}
        for what, names in (("exclude", self.exclude), ("include", self.include or ())):
            for n in names:
                k = name_key(self.canonical(n))
                if k not in yours and k not in parents and name_key(n) not in model_keys:
                    raise unknown(what, n)
        for child, _ in self.tree:
            if name_key(self.canonical(child)) not in yours:
                raise unknown("parents", child)


def _names(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value):
        raise ValueError(f"'{where}' must be a list of genre names, not {value!r}")
    return tuple(_tidy(v) for v in value)


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"'{where}' must be a table, not {value!r}")
    return value


def _writable_name(name: Any, where: str) -> str:
    """A name we may write: a non-empty string players will not split or read as a number."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"'{where}': genre names must be non-empty text, not {name!r}")
    for sep in SEPARATORS:
        if sep in name:
            raise ValueError(f"'{where}': {name!r} contains {sep!r}; players split genres on "
                             f"{' '.join(SEPARATORS)}, so it would show as several genres")
    if name.strip().isdigit():
        raise ValueError(f"'{where}': {name!r} is a number; ID3 players read it as a genre "
                         "number, not a name")
    return _tidy(name)


def parse(raw: Any, shipped_tree: Sequence[tuple[str, str]] = ()) -> GenreMap:
    """The ``[genres]`` table as written (TOML or beets' YAML), checked for everything that does
    not depend on the model; ValueError says what is wrong."""
    table = _table(raw, "genres")
    for key in table:
        if key not in KEYS:
            raise ValueError(f"unknown key 'genres.{key}' (known: {', '.join(KEYS)})")
    rename: list[tuple[str, str]] = []
    seen_target: dict[str, str] = {}
    for old, new in _table(table.get("rename", {}), "genres.rename").items():
        new = _writable_name(new, f"genres.rename.{old}")
        if (k := name_key(new)) in seen_target:
            raise ValueError(f"'genres.rename' renames {seen_target[k]!r} and {old!r} both to "
                             f"{new!r}; to merge genres on purpose, list them as aliases of one "
                             f"name")
        seen_target[k] = old
        rename.append((_tidy(old), new))
    aliases: list[tuple[str, tuple[str, ...]]] = []
    alias_of: dict[str, str] = {}
    for canon, alts in _table(table.get("aliases", {}), "genres.aliases").items():
        canon = _writable_name(canon, "genres.aliases")
        names = _names([alts] if isinstance(alts, str) else alts, f"genres.aliases.{canon}")
        for alt in names:
            if (k := name_key(alt)) in alias_of and alias_of[k] != canon:
                raise ValueError(f"'genres.aliases': {alt!r} is an alias of both "
                                 f"{alias_of[k]!r} and {canon!r}")
            alias_of[k] = canon
        aliases.append((canon, names))
    for old, _ in rename:
        if name_key(old) in alias_of:
            raise ValueError(f"'genres': {old!r} is renamed and also an alias of "
                             f"{alias_of[name_key(old)]!r}: say one of the two")
    exclude = _names(table.get("exclude", []), "genres.exclude")
    include = _names(table["include"], "genres.include") if "include" in table else None
    if include is not None and not include:
        raise ValueError("'genres.include' is empty: nothing could ever be written (leave it "
                         "out to allow every genre)")
    both = {name_key(n) for n in exclude} & {name_key(n) for n in include or ()}
    if both:
        raise ValueError(f"'genres': {sorted(both)[0]!r} is in both include and exclude")
    parents_raw = table.get("parents", False)
    tree: list[tuple[str, str]] = []
    if isinstance(parents_raw, bool):
        parents = parents_raw
    else:
        parents = True
        for child, parent in _table(parents_raw, "genres.parents").items():
            if not isinstance(parent, str):
                raise ValueError(f"'genres.parents.{child}' must be a genre name (or \"\" for "
                                 f"none), not {parent!r}")
            tree.append((_tidy(child), _writable_name(parent, f"genres.parents.{child}")
                         if parent.strip() else ""))
    m = GenreMap(tuple(rename), tuple(aliases), exclude, include, parents, tuple(tree),
                 tuple(shipped_tree))
    for child in m._parent:
        k, seen = child, set()
        while k in m._parent:
            if k in seen:
                raise ValueError(f"'genres.parents' goes round in a circle through "
                                 f"{m._parent[k]!r}")
            seen.add(k)
            k = name_key(m._parent[k])
    return m


def choose_mapped(chooser: Callable[[Mapping[str, float], Any], Scored],
                  genre_scores: Mapping[str, float], selection: Any) -> Scored:
    """``chooser`` (the taxonomy's confidence rule or a trained model's thresholds) over the
    genres the map allows, answered in the map's words (at most ``selection.top_k`` genres,
    then their parents). ``selection.genres`` is the map; empty: exactly the chooser's answer."""
    genre_map: GenreMap = selection.genres
    if genre_map.empty:
        return chooser(genre_scores, selection)
    from dataclasses import replace

    allowed = {n: s for n, s in genre_scores.items() if genre_map.allows(n)}
    ranked = chooser(allowed, replace(selection, top_k=max(len(allowed), 1)))
    # A chooser may name a genre it was not given (a trained model scores each of its classes,
    # absent ones as 0, against thresholds that can be 0): never one the map forbids.
    return genre_map.pick([(n, s) for n, s in ranked if genre_map.allows(n)], selection.top_k)


__all__ = ["KEYS", "SEPARATORS", "GenreMap", "choose_mapped", "name_key", "parse"]
