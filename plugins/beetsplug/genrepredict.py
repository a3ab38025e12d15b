"""genrepredict: genres for beets from the audio itself, with genre-tagger's engine.

Enable with ``plugins: genrepredict``. ``beet genre-predict [QUERY]`` predicts for the matched
items (``-a`` for albums), and with ``auto: yes`` every imported album is predicted in one batch
before beets writes its files. Predictions live in genre-tagger's cache, shared with
``genre-tagger scan`` and the daemon: a track any of them analysed is not analysed again.

Like ``lastgenre``: genres a person set are kept unless ``force``; with ``force`` and
``keep_existing`` theirs come first and ours follow. ``genre_source`` records where genres came
from (``genrepredict``), ``genre_confidence`` the best genre's score (a float: ``beet ls
genre_confidence:0.5..`` works) and ``genre_raw`` the strongest raw model tags.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from beets import ui, util
from beets.dbcore import types
from beets.library import Album, Item
from beets.plugins import BeetsPlugin

import tagger  # noqa: F401  (first, before beets starts threads: see tagger.memory)
from tagger.analysis.model.trained import POOLINGS

if TYPE_CHECKING:
    import optparse

    from beets.importer import ImportSession, ImportTask
    from beets.library import Library

SOURCE = "genrepredict"
MULTI_VALUED = "genres" in Item._fields  # beets >= 2.7: a genres list; before: one genre string


def _plain(value: Any) -> Any:
    """beets' YAML (ordered mappings) as plain dicts and lists, like TOML gives."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class GenrePredictPlugin(BeetsPlugin):
    # Read by beets.plugins.types(): typed flexible attributes, so numeric queries work.
    item_types: ClassVar[dict[str, types.Type[Any, Any]]] = {
        "genre_confidence": types.FLOAT, "genre_source": types.STRING,
        "genre_raw": types.STRING, "genre_predicted": types.STRING, "genre_before": types.STRING,
        "genre_decided": types.STRING}
    album_types: ClassVar[dict[str, types.Type[Any, Any]]] = {
        "genre_confidence": types.FLOAT, "genre_source": types.STRING,
        "genre_predicted": types.STRING, "genre_before": types.STRING,
        "genre_decided": types.STRING}

    def __init__(self) -> None:
        super().__init__()
        from tagger.settings import beets_keys

        self.config.add({
            "auto": True,  # predict during `beet import`
            # one genre set per album, for import and genre-predict alike (genre-tagger's key;
            # on here, as beets imports albums: `album: no` decides each track alone)
            "album": True,
            "force": False,  # replace genres a person set
            "keep_existing": False,  # with force: keep theirs first, add ours after
            "pretend": False,
            # genre-tagger's settings, under lastgenre's names where it has them (count) and
            # cache_db for the cache: the names, defaults and checks are genre-tagger's spec
            **{theirs: key.default for theirs, key in beets_keys().items()},
            "raw_tags": 5,  # how many raw model tags to keep in genre_raw
            "separator": ", ",  # joins genres into `genre` on beets < 2.7
            "genres": {},  # genre-tagger's [genres] map: rename, aliases, exclude, include, parents
        })
        self._engine: Any = None
        self._cache: Any = None
        self._changed_tasks: set[int] = set()
        if self.config["auto"].get(bool):
            self.import_stages = [self.imported]
            self.register_listener("import_task_files", self.import_task_files)

    # --- settings, cache and pipeline, made on first use ------------------------------------

    def _settings(self) -> Any:
        """beets' config mapped onto genre-tagger's one settings object (checked the same way)."""
        from tagger.errors import ConfigError
        from tagger.settings import beets_keys, build_settings

        keys = {theirs: key.name for theirs, key in beets_keys().items()}
        values = {ours: self.config[theirs].get() for theirs, ours in keys.items()}
        where = {ours: f"beets config genrepredict.{theirs}" for theirs, ours in keys.items()}
        if genre_map := self.config["genres"].get():
            values["genres"] = _plain(genre_map)
            where["genres"] = "beets config genrepredict.genres"
        try:
            return build_settings(values, where)
        except ConfigError as e:
            raise ui.UserError(str(e)) from None  # type: ignore[attr-defined]

    def _policy(self) -> str:
        """lastgenre's force / keep_existing, as genre-tagger's policies."""
        if not self.config["force"].get(bool):
            return "missing"
        return "merge" if self.config["keep_existing"].get(bool) else "overwrite"

    def _source(self) -> Any:
        """genre-tagger's score source: the same cache-then-engine loop as ``scan`` (identity
        reuse, duplicates analysed once, the engine loaded only if something needs analysing)."""
        from tagger.cache import Cache
        from tagger.errors import TaggerError
        from tagger.services import score_source

        settings = self._settings()
        try:
            if self._cache is None:
                self._cache = Cache(settings.cache_url)
            return score_source(settings, self._cache, self._engine)
        except TaggerError as e:  # the cache, or the learnt model's file: said, no traceback
            raise ui.UserError(str(e)) from None  # type: ignore[attr-defined]

    def _key(self, album: bool) -> str:
        """What a decision depends on (policy, selection, model, map, album mode), as
        ``genre-tagger scan`` keys its own: stored in ``genre_decided``."""
        from tagger.library.policy import decision_key
        from tagger.tags import TagOptions

        settings = self._settings()
        return str(decision_key(self._policy(), settings.selection(),  # type: ignore[arg-type]
                                TagOptions(), self._source().model.version, album))

    def _album(self) -> bool:
        return bool(self.config["album"].get(bool))

    # --- prediction ----------------------------------------------------------------------------

    def _scores(self, items: Sequence[Item]) -> dict[str, Any]:
        """Path -> cache row for every item that could be analysed; errors logged, never raised.

        Through genre-tagger's score source (:meth:`_source`), claiming the files as ``scan``
        and the daemon do.
        """
        from tagger.analysis.engine import Failure
        from tagger.cache.queue import Claims, WorkQueue
        from tagger.display import display
        from tagger.errors import EnvironmentProblem

        source = self._source()
        items_with_stat = []
        failed = 0
        for item in items:
            path = os.fsdecode(util.syspath(item.path))
            try:
                items_with_stat.append((path, os.stat(path)))
            except OSError as e:
                failed += 1
                self._log.warning("cannot analyse {}: {}", display(path), e.strerror or e)
        rows: dict[str, Any] = {}
        fresh = 0
        stats = dict(items_with_stat)

        def waiting(n: int) -> None:
            self._log.info("{} files are being worked on by another genre-tagger process (the "
                           "daemon, or a scan); waiting for it", n)

        try:
            # claimed as the daemon and scan claim theirs: no file is analysed by two at once
            with Claims(WorkQueue(source.cache), "beets") as claims:
                for paths, _ in claims.rounds(list(stats), on_wait=waiting):
                    for found in source.scores([(p, self._stat(p, stats)) for p in paths]):
                        claims.done(found.path)
                        if isinstance(found.result, Failure):
                            failed += 1
                            self._log.warning("cannot analyse {}: {}", display(found.path),
                                              found.result.reason)
                            continue
                        rows[found.path] = found.result
                        fresh += found.action == "analysed"
        except EnvironmentProblem as e:  # the machine's fault: say so once, blame no file
            self._log.error("genre-tagger cannot run: {}", display(str(e)))
        self._engine = source.loaded_engine
        self._log.info("{} analysed, {} from the genre-tagger cache, {} failed",
                       fresh, len(rows) - fresh, failed)
        return rows

    @staticmethod
    def _stat(path: str, seen: dict[str, os.stat_result]) -> os.stat_result:
        """Its stat now (another process may have tagged it while this one waited)."""
        try:
            return os.stat(path)
        except OSError:
            return seen[path]

    def _choose(self, genre_scores: dict[str, float]) -> list[tuple[str, float]]:
        """The shipped taxonomy's rule, or a trained model's per-class thresholds."""
        return list(self._source().model.choose(genre_scores, self._settings().selection()))

    @staticmethod
    def _existing(obj: Item | Album) -> list[str]:
        if MULTI_VALUED:
            return list(obj.get("genres") or [])
        value = obj.get("genre") or ""
        return [g.strip() for g in value.split(",") if g.strip()] if value else []

    @staticmethod
    def _split(value: str | None) -> list[str]:
        return [g for g in (value or "").split("; ") if g]

    def _assign(self, obj: Item | Album, chosen: list[tuple[str, float]],
                raw: dict[str, float] | None, key: str) -> bool:
        """genre-tagger's policy decides (:func:`tagger.library.policy.decide`): what we set before is
        ``genre_predicted`` (ours while nobody changed it), what was there before us
        ``genre_before``."""
        from tagger.library.policy import decide

        existing = self._existing(obj)
        ours = obj.get("genre_source") == SOURCE and obj.get("genre_predicted") is not None
        written = self._split(obj.get("genre_predicted")) if ours else None
        before = self._split(obj.get("genre_before")) if ours else None
        d = decide(existing, [g for g, _ in chosen], self._policy(), written, before,  # type: ignore[arg-type]
                   force=self.config["force"].get(bool), key=self._settings().genres.same)
        if d.new is None:
            self._log.debug("{}: keeping {} ({})", obj, existing or "no genre", d.why)
            return False
        new = d.new
        if MULTI_VALUED:
            obj.genres = new
        else:
            obj.genre = self.config["separator"].as_str().join(new)
        obj["genre_confidence"] = round(chosen[0][1], 4)
        obj["genre_source"] = SOURCE
        obj["genre_predicted"] = "; ".join(new)
        obj["genre_decided"] = key
        if not ours:
            obj["genre_before"] = "; ".join(existing)
        if raw is not None and isinstance(obj, Item):
            top = sorted(raw.items(), key=lambda kv: -kv[1])[:self.config["raw_tags"].get(int)]
            obj["genre_raw"] = ", ".join(f"{t}={s:.3f}" for t, s in top)
        return True

    def _decided(self, obj: Item | Album, key: str) -> bool:
        """Ours, untouched since, and decided under these very settings (album mode among
        them): deciding again could only give the same answer, or undo the other mode's."""
        return (obj.get("genre_source") == SOURCE and obj.get("genre_decided") == key
                and self._split(obj.get("genre_predicted")) == self._existing(obj))

    def _apply_items(self, items: Sequence[Item], write: bool, store: bool) -> None:
        key = self._key(album=False)
        items = [i for i in items if not self._decided(i, key)]
        scores = self._scores(items)
        for item in items:
            s = scores.get(os.fsdecode(util.syspath(item.path)))
            if s is None:
                continue
            if self._assign(item, self._choose(s.genre_scores), s.raw_scores, key):
                self._show_and_save(item, write, store)

    def _apply_album(self, album: Album, items: Sequence[Item], write: bool, store: bool) -> None:
        """One genre set for the album, from its tracks' scores averaged."""
        key = self._key(album=True)
        if items and all(self._decided(i, key) for i in items):
            return  # every track carries this album's decision already
        scores = self._scores(items)
        from tagger.analysis.taxonomy import album_scores

        if not scores:
            return
        chosen = self._choose(album_scores([s.genre_scores for s in scores.values()]))
        album_changed = self._assign(album, chosen, None, key)
        for item in items:
            s = scores.get(os.fsdecode(util.syspath(item.path)))
            if s is not None and self._assign(item, chosen, s.raw_scores, key):
                self._show_and_save(item, write, store)
        if album_changed:
            ui.show_model_changes(album, fields=self._fields(), print_obj=True)
            if store and not self.config["pretend"].get(bool):
                album.store()

    @staticmethod
    def _fields() -> list[str]:
        return ["genres" if MULTI_VALUED else "genre", "genre_confidence", "genre_source"]

    def _show_and_save(self, item: Item, write: bool, store: bool) -> None:
        ui.show_model_changes(item, fields=self._fields(), print_obj=True)
        if self.config["pretend"].get(bool):
            return
        if store:
            item.try_sync(write=write, move=False)
            if write:
                self._remember(item)

    # --- beets hooks ---------------------------------------------------------------------------

    def _remember(self, item: Item) -> None:
        """beets has just written an item's tags (``genre-predict``, an import): when they
        carry our genres, the cache genre-tagger shares learns what the file now holds, as a
        write of its own. Its learning then never takes them for a person's genres, and
        ``genre-tagger revert`` can put back what was there before. (Called where the plugin
        has the write done; beets' own ``after_write`` event cannot be used: beets refuses a
        plugin's listener while that plugin's command runs.)"""
        from tagger.formats.identity import audio_identity
        from tagger.tags import read_genres

        if item.get("genre_source") != SOURCE or item.get("genre_predicted") is None:
            return
        if self._split(item.get("genre_predicted")) != self._existing(item):
            return  # a person changed them in beets since: theirs now
        file = os.fsdecode(util.syspath(item.path))
        try:
            holds = read_genres(file)
            if [g.casefold() for g in holds] != [g.casefold() for g in self._split(
                    item.get("genre_predicted"))]:
                return  # beets' write failed (it only logs): the file holds what it held
            self._source()  # the cache, opened once
            row = self._cache.get(file)
            known: dict[str, Any] = {} if row is not None else {
                # imported: analysed under the path it came from; its audio says which
                "audio_id": audio_identity(file)}
            if row is None or row.genres_written is None:  # our first write: what it replaced
                known["genres_before"] = self._split(item.get("genre_before"))
            self._cache.upsert(file, genres_written=holds, written_at=time.time(), **known)
        except Exception as e:  # a hook of ours never fails beets' own write
            self._log.warning("{}: cannot record the genres written: {}", file, e)

    def commands(self) -> list[ui.Subcommand]:
        cmd = ui.Subcommand("genre-predict", help="predict genres from the audio itself")
        cmd.parser.add_option("-p", "--pretend", action="store_true",
                              help="show old -> new, change nothing")
        cmd.parser.add_option("-f", "--force", dest="force", action="store_true",
                              help="replace genres a person set")
        cmd.parser.add_option("-k", "--keep-existing", dest="keep_existing", action="store_true",
                              help="with --force: keep existing genres, add ours after them")
        cmd.parser.add_option("-w", "--write", dest="write", action="store_true", default=None,
                              help="write new metadata to files' tags (default: import.write)")
        cmd.parser.add_option("-W", "--nowrite", dest="write", action="store_false",
                              help="don't write metadata (opposite of -w)")
        cmd.parser.add_album_option()
        cmd.func = self.command
        train = ui.Subcommand("genre-train",
                              help="train a genre model on the genres people set in the library")
        train.parser.add_option("-o", "--out", dest="out", help="model file to write (required)")
        train.parser.add_option("--pooling", dest="pooling", default=None, choices=list(POOLINGS))
        train.parser.add_option("--seed", dest="seed", type="int", default=0)
        train.parser.add_option("--epochs", dest="epochs", type="int", default=200)
        train.parser.add_option("--min-files", dest="min_files", type="int", default=10,
                                help="leave out genres with fewer files (default 10)")
        train.func = self.train_command
        return [cmd, train]

    def _labelled(self, items: Sequence[Item]) -> tuple[list[Any], int]:
        """Items whose genres a person set: not ours, or ours corrected since (a label too).
        Grouped by album artist (else artist, else album) so no artist is split."""
        from tagger.training.labels import Labelled, label_key

        files, ours = [], 0
        for item in items:
            genres = self._existing(item)
            if not genres:
                continue
            if (item.get("genre_source") == SOURCE
                    and self._split(item.get("genre_predicted")) == genres):
                ours += 1
                continue
            who = item.get("albumartist") or item.get("artist") or item.get("album") or ""
            path = os.fsdecode(util.syspath(item.path))
            group = f"artist:{label_key(who)}" if who else f"folder:{os.path.dirname(path)}"
            files.append(Labelled(path, tuple(genres), group))
        return files, ours

    def train_command(self, lib: Library, opts: optparse.Values, args: list[str]) -> None:
        """``beet genre-train [QUERY] -o MODEL``: genre-tagger's trainer on beets' labels."""
        from tagger.analysis.model.trained import DEFAULT_POOLING
        from tagger.cache import Cache
        from tagger.display import display
        from tagger.errors import TaggerError
        from tagger.training.labels import label_set
        from tagger.training.trainer import TrainOptions, features_for, require_learner, train

        if not opts.out:
            raise ui.UserError("genre-train needs --out MODEL")  # type: ignore[attr-defined]
        if not 0 <= opts.seed < 2**32:
            raise ui.UserError(f"--seed {opts.seed}: a seed is 0 to 4294967295")  # type: ignore[attr-defined]
        settings = self._settings()

        def say(text: str) -> None:
            self._log.info("{}", display(text))

        options = TrainOptions(pooling=opts.pooling or DEFAULT_POOLING, epochs=opts.epochs,
                               seed=opts.seed)
        files, ours = self._labelled(list(lib.items(args)))
        try:
            require_learner(options.pooling)  # before any decoding
            labels = label_set(files, opts.min_files, [], settings.genres)
            say(f"{len(labels.files)} items with genres a person set ({ours} carry ours, unused)"
                + ("; left out (too few items): "
                   + ", ".join(f"{g} {n}" for g, n in labels.dropped.items()) if labels.dropped else ""))
            if self._cache is None:
                self._cache = Cache(settings.cache_url)
            data, base = features_for(labels, settings, self._cache, say)
            model = train(data, base, options, opts.out, say, f"beets library {lib.path!r}",
                          labels.vocabulary)
        except TaggerError as e:
            raise ui.UserError(str(e)) from None  # type: ignore[attr-defined]
        say(f"wrote {opts.out}: {model.version} ({', '.join(model.classes)}); use it with "
            f"genrepredict.model: {opts.out}")

    def command(self, lib: Library, opts: optparse.Values, args: list[str]) -> None:
        self.config.set_args({k: v for k, v in vars(opts).items()
                              if v is not None and k in ("pretend", "force", "keep_existing")})
        write = ui.should_write(opts.write)
        if opts.album:  # albums matched and, for this run, one genre set each
            for album in lib.albums(args):
                self._apply_album(album, list(album.items()), write, store=True)
        elif self._album():  # the config's rule, as on import: tracks with their album
            items = list(lib.items(args))
            by_album: dict[int, list[Item]] = {}
            for item in items:
                if item.album_id is not None:
                    by_album.setdefault(item.album_id, []).append(item)
            for album_id in by_album:
                found = lib.get_album(album_id)
                if found is not None:  # every track: the album's set comes from all of them
                    self._apply_album(found, list(found.items()), write, store=True)
            self._apply_items([i for i in items if i.album_id is None], write, store=True)
        else:
            self._apply_items(list(lib.items(args)), write, store=True)

    def imported(self, session: ImportSession, task: ImportTask) -> None:
        """Import stage: the whole task in one batch; beets writes the files afterwards."""
        items = list(task.imported_items())
        if not items:
            return
        album = getattr(task, "album", None) if task.is_album else None
        if album is not None and self._album():
            self._apply_album(album, items, write=False, store=True)
        else:
            self._apply_items(items, write=False, store=True)
        self._changed_tasks.add(id(task))

    def import_task_files(self, session: ImportSession, task: ImportTask) -> None:
        """beets writes tags on import only for tasks it tagged itself; for as-is imports
        (``-A``, ``autotag: no``) we write our genres, if ``import.write`` asks for writes."""
        from beets import config
        from beets.importer import Action

        if id(task) not in self._changed_tasks:
            return
        self._changed_tasks.discard(id(task))
        beets_writes = getattr(task, "apply", False) or task.choice_flag == Action.RETAG
        if not config["import"]["write"].get(bool):
            return
        for item in task.imported_items():
            if not beets_writes:
                item.try_write()
            self._remember(item)  # written by beets before this event, or just now


