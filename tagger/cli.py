"""``genre-tagger``: the command line. Parses options into one :class:`EngineConfig` and hands
files to the engine; knows nothing of how genres are computed.

Paths are data: every path (and every tag value read from a file) printed for a person goes
through :func:`tagger.display.display` and is never read as rich markup; JSON output keeps the
exact path (see :func:`as_json_text`).

Exit codes, the same for every command: 0 all fine, 1 some files failed (the rest were done),
2 usage or environment error (bad options, no ffmpeg, a cache that cannot be opened, a bad
config), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from tagger import __version__
from tagger.analysis.config import EngineConfig
from tagger.analysis.engine import Failure, Prediction, Result
from tagger.analysis.model.trained import DEFAULT_POOLING, POOLINGS
from tagger.display import display
from tagger.errors import ConfigError, TaggerError
from tagger.settings import KEYS, Settings, load_settings
from tagger.stopping import Flag, on_signals

if TYPE_CHECKING:  # imported where used: every command starts without what others need
    from rich.text import Text

    from tagger.cache import Cache, TrackRow
    from tagger.library.tagging import Outcome
    from tagger.training.labels import LabelSet
    from tagger.training.trainer import TrainOptions

#: Genres chosen for a file, most confident first (empty: it abstained).
Chosen = list[tuple[str, float]]

EXIT_OK = 0
EXIT_FAILED = 1  # some files failed; the others were done
EXIT_USAGE = 2  # click's own code for usage errors; also environment errors
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


class SetupProblem(click.ClickException):
    """Something around the files is wrong (the cache, the config, ffmpeg): exit 2, not 1,
    so scripts can tell "fix your setup" from "some files failed"."""

    exit_code = EXIT_USAGE


class _Main(click.Group):
    """Maps Ctrl-C to exit 130 (click's own handler says "Aborted!" and exits 1) and a
    genre-tagger error that escapes a command to one line and exit 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except TaggerError as e:
            click.echo(f"error: {display(str(e))}", err=True)
            sys.exit(EXIT_USAGE)


def as_json_text(value: Any) -> str:
    """JSON for machine output: valid, pure ASCII (so valid UTF-8 whatever the locale), lossless.

    A path that is not valid UTF-8 is a str with surrogate escapes (``os.fsdecode``); with
    ``ensure_ascii`` they are written as ``\\udcXX`` escapes, which ``json.loads`` turns back into
    the same str (``os.fsencode`` of it gives the file's exact bytes). Built in full before it is
    written, so an error can never leave half a document.
    """
    return json.dumps(value, indent=2, ensure_ascii=True)


def require_ffmpeg() -> None:
    """Without a working ffmpeg every file would fail one by one (and scan would remember each
    as failed): say so once, before anything is loaded (``ffmpeg -version`` is run, so a broken
    one is caught too)."""
    from tagger.analysis.decode import check_decoder
    from tagger.errors import EnvironmentProblem

    try:
        check_decoder()
    except EnvironmentProblem as e:
        raise SetupProblem(display(str(e))) from None


def error_text(path: str, reason: str) -> Text:
    """``error PATH: REASON`` for a rich console: a Text, so no part is read as markup."""
    from rich.text import Text

    return Text.assemble(("error", "red"), f" {display(path)}: {display(reason)}")


def expand(paths: Sequence[str], on_error: Callable[[str, OSError], None] | None = None) -> Iterator[str]:
    """Files as given (the engine reports missing ones); folders walked by :func:`tagger.library.walk.walk`,
    the same walker ``scan`` uses, in a stable order and under the path as given. Folders that
    cannot be read go to ``on_error``."""
    from tagger.library.walk import walk

    for p in paths:
        if not os.path.isdir(p):
            yield p
            continue
        base = os.path.abspath(p)

        def as_given(found: str, p: str = p, base: str = base) -> str:
            rel = os.path.relpath(found, base)
            return p if rel == "." else rel if p in (".", "./") else os.path.join(p, rel)

        report = None if on_error is None else lambda f, e: on_error(as_given(f), e)
        for found, _ in walk([p], clean_temps=False, on_error=report):
            yield as_given(found)


F = TypeVar("F", bound=Callable[..., Any])


def _with(opts: Sequence[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        for opt in reversed(opts):
            f = opt(f)
        return f
    return decorate


CONFIG = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="TOML settings [default: ~/.config/genre-tagger/config.toml, or "
         "/etc/genre-tagger/config.toml as root]; GENRE_TAGGER_<KEY> and options win over it.")
_TYPES = {"int": click.INT, "float": click.FLOAT}
_METAVARS = {"model": "NAME|FILE", "database": "URL", "budget": "auto|all|N"}


def setting_option(name: str) -> Callable[[F], F]:
    """The option for one setting, made from its row in :data:`tagger.settings.SPEC`. It
    defaults to None: an option not given leaves the setting to the config file or the
    environment; its value is checked with the file's and the environment's, by
    :func:`settings_from` (a wrong one exits 2 naming it)."""
    key = KEYS[name]
    assert key.flag, f"{name} is not a command-line setting"
    d = key.default
    shown = key.default_words or ("yes" if d is True else "no" if d is False else
                                  repr(d) if isinstance(d, str) and not d.isalnum() else d)
    said = key.help if key.help.split(":")[0] in key.choices else key.help[0].upper() + key.help[1:]
    text = f"{said} [default: {shown}]."
    decls = [key.flag, *([key.short] if key.short else []), name]
    if key.kind == "bool":
        if "/" in key.flag:  # --x/--no-x: click sees a flag (is_flag=False would refuse it)
            return click.option(*decls, default=None, help=text)
        return click.option(*decls, is_flag=True, default=None, help=text)
    kind = click.Choice(key.choices) if key.choices else _TYPES.get(key.kind, click.STRING)
    return click.option(*decls, type=kind, default=None, metavar=_METAVARS.get(name), help=text)


def setting_options(*names: str) -> Callable[[F], F]:
    """The options for these settings, in this order in --help."""
    return _with([setting_option(n) for n in names])


#: Which settings each kind of command takes as options (by name: the spec is the order).
ANALYSIS = ("device", "batch_size", "jobs", "budget", "window_hop", "precision")
ENGINE = ("model", *ANALYSIS, "top_k", "min_confidence", "timeout")
TAGS = ("id3v23", "id3v24", "id3_separator", "keep_mtime", "hard_links")
engine_options = _with([CONFIG, setting_options(*ENGINE)])


def settings_from(kw: dict[str, Any], check_genres: bool = True, **more: Any) -> Settings:
    """The one :class:`Settings` of this command: config file, environment, then the options
    given (taken out of ``kw``); a wrong value exits 2 naming it."""
    overrides = {k: kw.pop(k) for k in list(kw) if k in Settings.__dataclass_fields__}
    try:
        return load_settings(kw.pop("config_path", None), overrides={**overrides, **more},
                             check_genres=check_genres)
    except ConfigError as e:
        raise SetupProblem(f"configuration: {display(str(e))}") from None


def genre_map_for_labels(settings: Settings, labels: LabelSet) -> None:
    """Training: the genre map must make sense for these labels (exit 2 if not)."""
    from tagger.settings import check_genre_map

    try:
        check_genre_map(settings, labels.vocabulary)
    except ConfigError as e:
        raise SetupProblem(f"configuration: {display(str(e))}") from None


def _as_json(r: Result, chosen: Chosen) -> dict[str, Any]:
    """One file's JSON entry; ``path`` is exactly the path given or found (see :func:`as_json_text`)."""
    if isinstance(r, Failure):
        return {"path": r.path, "ok": False, "error": r.code, "reason": r.reason}
    return {"path": r.path, "ok": True, "genres": [{"genre": g, "confidence": round(s, 4)}
                                                   for g, s in chosen],
            "genre_scores": {k: round(v, 4) for k, v in r.genre_scores.items()},
            "raw": {k: round(v, 4) for k, v in r.raw.items()},
            "windows": r.windows, "seconds": round(r.seconds, 2), "model": r.model_version}


def _as_line(r: Prediction, chosen: Chosen) -> str:
    if not chosen:
        return f"{display(r.path)}: (no genre reached the minimum confidence)"
    return f"{display(r.path)}: " + ", ".join(f"{g} {s:.2f}" for g, s in chosen)


def run_predict(paths: list[str], config: EngineConfig, as_json: bool,
                unreadable: Sequence[tuple[str, str]] = ()) -> int:
    """Predict, print, and return the exit code (1 if any file failed or any folder given,
    ``(path, reason)`` in ``unreadable``, could not be read)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.text import Text

    from tagger.analysis.engine import Engine

    err = Console(stderr=True)
    results: list[dict[str, Any]] = []
    for path, reason in unreadable:
        err.print(error_text(path, reason), highlight=False, soft_wrap=True)
        results.append({"path": path, "ok": False, "error": "unreadable-folder", "reason": reason})
    if not paths:
        if as_json:
            sys.stdout.write(as_json_text(results) + "\n")
        return EXIT_FAILED
    with err.status("loading the model..."):
        engine = Engine(config)
    failures = 0
    show_bar = len(paths) > 1 and err.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err, disable=not show_bar, transient=True,
                  redirect_stdout=False) as bar:
        task = bar.add_task("analysing", total=len(paths))
        for r in engine.predict_paths(paths):
            bar.advance(task)
            chosen = [] if isinstance(r, Failure) else engine.model.choose(r.genre_scores,
                                                                            config.selection)
            if isinstance(r, Failure):
                failures += 1
                err.print(error_text(r.path, r.reason), highlight=False, soft_wrap=True)
            elif not as_json:
                if show_bar and sys.stdout.isatty():  # same terminal: print above the bar
                    bar.console.print(Text(_as_line(r, chosen)), highlight=False, soft_wrap=True)
                else:
                    click.echo(_as_line(r, chosen))
            results.append(_as_json(r, chosen))
    if as_json:
        sys.stdout.write(as_json_text(results) + "\n")
    if failures:
        err.print(f"{failures} of {len(paths)} files failed", highlight=False)
    return EXIT_FAILED if failures or unreadable else EXIT_OK


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genre-tagger")
def main() -> None:
    """Fill in genre tags by listening to the audio, offline."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--json", "as_json", is_flag=True, help="Machine output with every raw score.")
@engine_options
def predict(files: tuple[str, ...], as_json: bool, **kw: Any) -> None:
    """Predict the genres of FILES (folders are searched for audio files)."""
    from tagger.library.walk import unreadable_reason

    unreadable: list[tuple[str, str]] = []
    paths = list(expand(files, on_error=lambda p, e: unreadable.append((p, unreadable_reason(p, e)))))
    if not paths and not unreadable:
        raise click.UsageError("no audio files found in the given folders")
    if paths:
        require_ffmpeg()
    config = settings_from(kw).engine_config()
    sys.exit(run_predict(paths, config, as_json, unreadable))


@main.command()
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the example files here and keep them.")
@click.option("--json", "as_json", is_flag=True, help="Machine output with every raw score.")
@engine_options
def demo(keep: Path | None, as_json: bool, **kw: Any) -> None:
    """Synthesise a few example pieces (no network needed) and predict their genres."""
    from tagger.demo import write_demo

    config = settings_from(kw).engine_config()
    require_ffmpeg()
    with tempfile.TemporaryDirectory(prefix="genre-tagger-demo-") as tmp:
        files = write_demo(keep or Path(tmp))
        sys.exit(run_predict([str(f) for f in files], config, as_json))


# --- library commands: scan, revert, show, stats ------------------------------------------------


library_options = _with([CONFIG, setting_options("database", *TAGS)])
cache_options = _with([CONFIG, setting_option("database")])


def _open_cache(url: str | None) -> Cache:
    """The cache, or exit 2 with one line saying why it cannot be opened."""
    from tagger.cache import Cache
    from tagger.errors import CacheUnavailable

    try:
        return Cache(url)
    except CacheUnavailable as e:
        raise SetupProblem(display(str(e))) from None


def _genres(genres: Sequence[str] | None, empty: str = "(none)") -> str:
    """Genres read from a file are file data too: escaped like paths."""
    return display("; ".join(genres or [])) or empty


@main.command()
@click.argument("roots", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, readable=False))
@setting_option("policy")
@click.option("--dry-run", is_flag=True, help="Print old -> new for each file; write nothing.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a machine-readable report to this file.")
@click.option("--retry-failed", is_flag=True,
              help="Analyse again the files that failed before, even if they did not change.")
@click.option("--retag-reverted", is_flag=True,
              help="Tag again the files you reverted (no front door writes them otherwise).")
@setting_option("album")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Analyse on a Ray cluster (its head's address, 'auto' for one started on this "
                   "machine, 'local' to start one here); this machine keeps the cache and writes "
                   "the tags. Needs genre-tagger[cluster] on every machine.")
@library_options
@setting_options(*ENGINE)
def scan(roots: tuple[str, ...], dry_run: bool, json_out: Path | None, retry_failed: bool,
         retag_reverted: bool, ray_address: str | None, **kw: Any) -> None:
    """Analyse every audio file under ROOTS and write genre tags per the policy."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tagger.library.albums import describe
    from tagger.library.pipeline import resolve
    from tagger.library.tagging import UNSUPPORTED
    from tagger.services import scanner as new_scanner

    settings = settings_from(kw)
    require_ffmpeg()
    err = Console(stderr=True)
    stop = Flag()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        # Only a flag and os.write: a handler may run inside any lock the main thread holds.
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        os.write(2, b"stopping after the files in flight (Ctrl-C again to abort)...\n")

    previous = signal.signal(signal.SIGINT, on_sigint)
    with _open_cache(settings.cache_url) as cache:
        remote = None
        if ray_address:
            from tagger.analysis.remote import RayEngine
            from tagger.library.learned import resolve as in_use

            # the model in use (learning's, if it switched) goes to the cluster's actors
            remote = RayEngine(in_use(settings, cache).settings.engine_config(), ray_address)
        scanner = new_scanner(settings, cache, remote, roots=resolve(roots), dry_run=dry_run,
                              retry_failed=retry_failed, retag_reverted=retag_reverted)
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                      console=err, disable=not err.is_terminal, transient=True,
                      redirect_stdout=False) as bar:
            task = bar.add_task("scanning", total=None)

            shown_album: list[str | None] = [None]

            def on_outcome(o: Outcome) -> None:
                bar.advance(task)
                if o.error == UNSUPPORTED:  # why it has no genres; not a failure
                    err.print(f"{display(o.path)}: {display(o.reason or o.error)}", highlight=False,
                              markup=False, soft_wrap=True)
                elif o.error:
                    err.print(error_text(o.path, o.reason or o.error), highlight=False, soft_wrap=True)
                elif o.new is not None and (dry_run or o.decision == "write"):
                    if o.album is not None and o.album != shown_album[0]:  # --album: its group
                        click.echo(f"album {display(describe(o.album))}: {_genres(o.new)}")
                        shown_album[0] = o.album
                    # what it changes, file by file (as beets does); the rest are counted
                    click.echo(("  " if o.album else "") + _change(o))

            # Folders the walk cannot read come here too, as failed outcomes (scan.py).
            def on_wait(n: int) -> None:
                err.print(f"waiting for {n} files another genre-tagger process is working on "
                          "(the daemon, or another scan)", highlight=False)

            report = scanner.run(stop, on_total=lambda n: bar.update(task, total=n),
                                 on_outcome=on_outcome, on_wait=on_wait)
    signal.signal(signal.SIGINT, previous)
    err.print(report.summary(dry_run), highlight=False, markup=False, soft_wrap=True)
    if json_out:
        json_out.write_text(as_json_text(report.as_dict()) + "\n", encoding="utf-8")
    if report.interrupted:
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_FAILED if report.failures else EXIT_OK)


@main.command()
@click.argument("roots", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Print what would be put back; write nothing.")
@library_options
def revert(roots: tuple[str, ...], dry_run: bool, **kw: Any) -> None:
    """Put back the genres files under ROOTS had before genre-tagger changed them."""
    from tagger.library.pipeline import resolve
    from tagger.library.tagging import revert as do_revert

    settings = settings_from(kw)
    with _open_cache(settings.cache_url) as cache:
        outcomes = do_revert(resolve(roots), cache, settings.tag_options(), dry_run)
    for o in outcomes:
        if o.action == "reverted":
            click.echo(f"{display(o.path)}: {_genres(o.old, '')} -> {_genres(o.new)}")
        elif o.action == "failed":
            click.echo(f"error {display(o.path)}: {display(o.reason or o.error or '')}", err=True)
        else:
            click.echo(f"{display(o.path)}: skipped: {display(o.reason or '')}", err=True)
    done = sum(o.action == "reverted" for o in outcomes)
    failed = sum(o.action == "failed" for o in outcomes)
    click.echo(f"{'would revert' if dry_run else 'reverted'} {done} files, "
               f"skipped {len(outcomes) - done - failed}"
               f"{f', failed {failed}' if failed else ''}", err=True)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="OUT.png", help="Draw the file's genre scores over time, window by window "
                                      "(from the cache, else by analysing it).")
@click.option("--model", default=None, metavar="NAME|FILE",
              help="With --plot: the model whose view to draw [default: the configured one].")
@click.option("--budget", default=None,
              help="With --plot: the windows to draw, analysed now ('all' for every window, or "
                   "a number spread evenly) [default: the windows the cache kept].")
@cache_options
def show(files: tuple[str, ...], as_json: bool, plot: Path | None, **kw: Any) -> None:
    """Print what the cache knows about FILES or the audio files in folders (--plot: draw one
    file's genres over time)."""
    import datetime

    from tagger.library.albums import describe
    from tagger.library.tagging import in_words

    if plot is not None:
        if as_json:
            raise click.UsageError("--plot draws a picture; --json prints: use one")
        fresh = kw["budget"] is not None
        sys.exit(_show_plot(files, plot, settings_from(kw), fresh))
    if kw.pop("budget") is not None:
        raise click.UsageError("--budget is for --plot (the cache shows what each file was "
                               "decided with)")
    if kw.pop("model") is not None:
        raise click.UsageError("--model is for --plot (the cache shows what each file was "
                               "decided with)")
    settings = settings_from(kw)
    files = tuple(expand(files))  # a folder: its audio files, as predict and scan find them
    with _open_cache(settings.cache_url) as cache:
        rows = [(f, cache.get(str(Path(f).absolute()))) for f in files]
    missing = sum(r is None for _, r in rows)
    from tagger.tags import genres_or_reason

    now = {r.path: genres_or_reason(r.path, settings.tag_options()) for _, r in rows if r is not None}
    if as_json:
        click.echo(as_json_text([{"path": f, **({**r.__dict__, "genres_now": now[r.path][0],
                                                 "genres_now_error": now[r.path][1]}
                                                if r else {"known": False})} for f, r in rows]))
        sys.exit(EXIT_FAILED if missing else EXIT_OK)
    for f, r in rows:
        if r is None:
            click.echo(f"{display(f)}: not in the cache")
            continue
        when = (datetime.datetime.fromtimestamp(r.analysed_at).isoformat(" ", "seconds")
                if r.analysed_at else "-")
        error = f" ({r.error_code}: {display(r.error_reason or '')})" if r.error_code else ""
        click.echo(f"{display(r.path)}\n  status: {r.status}{error}")
        click.echo(f"  model: {r.model_version}, analysed {when}")
        click.echo(f"  genres chosen: {', '.join(r.genres_chosen) or '(none)'}"
                   + (f" (for its whole album, {display(describe(r.album_key))}: the mean of "
                      "its tracks' scores; the scores below are this track's own)"
                      if r.album_key and (r.decision_key or "").endswith("|album") else ""))
        click.echo(f"  {_written_line(r, *now[r.path])}")
        if (why := in_words(r, now[r.path][0], settings.policy, settings.genres.same)) is not None:
            click.echo(f"  decision: {display(why)}")
        top = sorted(r.genre_scores.items(), key=lambda kv: -kv[1])[:6]
        click.echo("  genre scores: " + ", ".join(f"{g} {s:.2f}" for g, s in top))
        raw = sorted(r.raw_scores.items(), key=lambda kv: -kv[1])[:8]
        click.echo("  top raw tags: " + ", ".join(f"{t} {s:.2f}" for t, s in raw))
    sys.exit(EXIT_FAILED if missing else EXIT_OK)


def _written_line(r: TrackRow, now: list[str] | None, error: str | None) -> str:
    """``show``'s lines on the file's genres: what it carries now and, only where we wrote,
    what we wrote and what it had before us."""
    from tagger.library.policy import same_genres
    from tagger.library.tagging import CORRECTED, REVERTED

    genres_now = f"genres now: {_genres(now)}" if now is not None else \
        f"genres now: cannot be read ({display(error or '')})"
    if r.genres_written is None:
        whose = ("genre-tagger put back the genres it found ('revert')" if r.decision_key == REVERTED
                 else "a person set them in the page" if r.decision_key == CORRECTED
                 else "genre-tagger has not written this file's genres")
        return f"{genres_now}\n  written: (never): {whose}; its genres are its own"
    if now is None:
        still = ""
    elif same_genres(now, r.genres_written):
        still = " (the file still carries them)"
    else:
        still = " (changed since: a person or another program replaced them)"
    return (f"{genres_now}\n  written by genre-tagger: {_genres(r.genres_written)}{still}; "
            f"before us: {_genres(r.genres_before)}")


def _show_plot(files: tuple[str, ...], out: Path, settings: Settings, fresh: bool = False) -> int:
    """``show FILE --plot OUT.png``: one file's genres over time (``fresh``: analysed now with
    the settings' budget, not the windows the cache kept)."""
    from tagger import plots
    from tagger.errors import NoTimeline
    from tagger.library.timeline import timeline
    from tagger.services import score_source

    if len(files) != 1:
        raise click.UsageError("--plot draws one file at a time")
    if not out.name or out.is_dir():
        raise click.UsageError(f"--plot needs a file name, not {display(str(out)) or 'nothing'}")
    plots.require()
    path = str(Path(files[0]).absolute())
    if not os.path.isfile(path):
        raise click.UsageError(f"{display(files[0])}: no such file")
    with _open_cache(settings.cache_url) as cache:
        try:
            t = timeline(path, score_source(settings, cache), fresh=fresh)
        except NoTimeline as e:
            click.echo(f"error {display(str(e))}", err=True)
            return EXIT_FAILED
        except OSError as e:
            click.echo(f"error {display(path)}: {e.strerror or e}", err=True)
            return EXIT_FAILED
    sel = settings.selection()
    where = "from the cache" if t.source == "cache" else "just analysed"
    note = f"{len(t.times)} {t.unit}s, scores {where}; model {t.model}"
    if t.unit == "segment":
        note += "; each segment averages neighbouring windows"
    try:  # a trained model's thresholds are its own, per genre: no one line to draw
        plots.timeline_png(out, display(os.path.basename(path)), t.times, t.series, t.chosen,
                           None if t.unit == "segment" else sel.min_confidence, note)
    except OSError as e:
        click.echo(f"error: cannot write {display(str(out))}: {e.strerror or e}", err=True)
        return EXIT_FAILED
    chosen = ", ".join(f"{g} {s:.2f}" for g, s in t.chosen) or "(none: abstained)"
    click.echo(f"{display(path)}: {chosen}; drawn in {display(str(out))} ({note})")
    return EXIT_OK


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="OUT.png", help="Draw the genre distribution and a confidence histogram.")
@cache_options
def stats(as_json: bool, plot: Path | None, **kw: Any) -> None:
    """Summarise the library as the cache sees it."""
    from collections import Counter

    settings = settings_from(kw)
    if plot is not None:
        from tagger import plots

        if not plot.name or plot.is_dir():
            raise click.UsageError(f"--plot needs a file name, not {display(str(plot)) or 'nothing'}")
        plots.require()
    from tagger.library.learned import describe

    with _open_cache(settings.cache_url) as cache:
        s = cache.summary()
        written = cache.written()
        decided = list(cache.decided())
        s["model"] = describe(cache, settings)
    s.update(_still_ours(written, settings))
    # What stats --plot draws: the genres chosen for every analysed file, those left alone too.
    s["chosen"] = dict(Counter(g for _, chosen, _ in decided for g in chosen).most_common())
    if plot is not None:
        _stats_plot(decided, plot, settings)
    if as_json:
        click.echo(as_json_text(s))
        return
    total = sum(s["by_status"].values())
    if not total:
        click.echo("no files known yet: 'genre-tagger scan FOLDER' (or the daemon) analyses "
                   "them into this cache")
        return
    click.echo(f"{total} files known: " + ", ".join(f"{v} {k}" for k, v in sorted(s["by_status"].items())))
    _model_lines(s["model"])
    click.echo(f"{s['tagged']} carry genres written by genre-tagger")
    if s["changed_since"]:
        click.echo(f"{s['changed_since']} carry other genres now: a person (or another program) "
                   "changed them after genre-tagger wrote them")
    if s["missing"]:
        click.echo(f"{s['missing']} tagged by genre-tagger are gone (no such file)")
    if s["unreadable"]:
        click.echo(f"{sum(s['unreadable'].values())} tagged by genre-tagger cannot be read now: "
                   + ", ".join(f"{k} {v}" for k, v in s["unreadable"].items()))
    if s["genres"]:
        click.echo("by genre, files carrying it from genre-tagger: "
                   + ", ".join(f"{g} {n}" for g, n in list(s["genres"].items())[:20]))
    if s["chosen"] and s["chosen"] != s["genres"]:
        click.echo("by genre, chosen for every analysed file (those left alone too; what "
                   "--plot draws): " + ", ".join(f"{g} {n}" for g, n in list(s["chosen"].items())[:20]))
    if s["failures"]:
        click.echo("failures: " + ", ".join(f"{k} {v}" for k, v in s["failures"].items()))


def _model_lines(model: dict[str, Any]) -> None:
    """Which model is in use and why (``status`` and ``stats``)."""
    click.echo(f"model: {display(str(model['model']))} ({display(str(model['why']))})")
    learning = "on" if model["learn"] else "off"
    if "last_look" in model:
        learning += f"; last looked {display(str(model['last_look']))}"
    click.echo(f"learning: {learning}")
    if "last_candidate" in model:
        click.echo(f"last candidate: {display(str(model['last_candidate']))}")


def _still_ours(written: list[tuple[str, list[str]]], settings: Settings) -> dict[str, Any]:
    """What the files say now of the genres the cache says we wrote (a person's edit never
    passes through the cache): ``tagged``, files that still carry exactly what we wrote (as
    ``revert`` compares); ``changed_since``, files whose genres are other now; ``missing``;
    ``unreadable`` (reason code -> files); ``genres``, genre -> files carrying it from us;
    ``written``, what the cache alone says.

    Every such file's tags are read: about 0.3 ms a file on a local disk whose pages are cached
    (400 files, FLAC/MP3/Ogg/M4A, in 0.10-0.13 s), so some 10 s for 30,000 files; more where
    each open waits on a seek or a network share.
    """
    from tagger.errors import TagError
    from tagger.library.policy import same_genres
    from tagger.tags import read_genres

    tags = settings.tag_options()
    tagged = changed = missing = 0
    unreadable: dict[str, int] = {}
    genres: dict[str, int] = {}
    for path, ours in written:
        try:
            now = read_genres(path, tags)
        except TagError as e:
            if e.code == "missing":
                missing += 1
            else:
                unreadable[e.code] = unreadable.get(e.code, 0) + 1
            continue
        if not same_genres(now, ours):
            changed += 1
            continue
        tagged += 1
        for g in ours:
            genres[g] = genres.get(g, 0) + 1
    return {"tagged": tagged, "changed_since": changed, "missing": missing,
            "unreadable": dict(sorted(unreadable.items())), "written": len(written),
            "genres": dict(sorted(genres.items(), key=lambda kv: (-kv[1], kv[0])))}


def _stats_plot(decided: Sequence[tuple[str, list[str], dict[str, float]]], out: Path,
                settings: Settings) -> None:
    from collections import Counter

    from tagger import plots

    genres = Counter(g for _, chosen, _ in decided for g in chosen)
    best = [max(scores.values()) for _, _, scores in decided if scores]
    abstained = sum(status == "abstained" for status, _, _ in decided)
    try:
        plots.stats_png(out, genres, best, settings.min_confidence, len(decided), abstained)
    except OSError as e:
        raise SetupProblem(f"cannot write {display(str(out))}: {e.strerror or e}") from None
    click.echo(f"drawn in {display(str(out))}", err=True)


# --- teach it your genres: train, evaluate ---------------------------------------------------------


TRAIN = [
    click.option("--pooling", type=click.Choice(POOLINGS), default=None,
                 help=f"The head and how it pools a song's windows [default: {DEFAULT_POOLING}"
                      ": a linear SVM on the mid-end features, chosen by bench/bench_train.py; "
                      "the others are Keras MIL heads]."),
    click.option("--epochs", type=click.IntRange(1), default=200, show_default=True,
                 help="Keras heads: at most this many epochs (training stops earlier when the validation "
                      "loss stops improving)."),
    click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                 help="The same seed and labels give the same model."),
    click.option("--min-files", type=click.IntRange(1), default=10, show_default=True,
                 help="Genres with fewer files are left out (and listed)."),
]
train_options = _with([CONFIG, setting_option("database"), *TRAIN, setting_options(*ANALYSIS)])


def _train_options(kw: dict[str, Any]) -> TrainOptions:
    from tagger.training.trainer import TrainOptions

    return TrainOptions(pooling=kw.pop("pooling") or DEFAULT_POOLING, epochs=kw.pop("epochs"),
                        seed=kw.pop("seed"))


def _say(text: str) -> None:
    click.echo(display(text), err=True)


def _report_labels(labels: LabelSet) -> None:
    from collections import Counter

    counts = Counter(g for f in labels.files for g in f.genres)
    _say(f"{len(labels.files)} labelled files, {len(counts)} genres: "
         + ", ".join(f"{g} {n}" for g, n in sorted(counts.items())))
    if labels.dropped:
        _say("left out (too few files): " + ", ".join(f"{g} {n}" for g, n in labels.dropped.items()))
    if labels.left_out:
        _say("left out by the [genres] map: "
             + ", ".join(f"{g} {n}" for g, n in labels.left_out.items()))
    for p in labels.problems[:10]:
        _say(f"skipped: {p}")
    if len(labels.problems) > 10:
        _say(f"skipped: ... and {len(labels.problems) - 10} more")


@main.command()
@click.argument("labels", nargs=-1, type=click.Path(exists=True))
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), required=True,
              help="Where to write the model file (e.g. my-genres.npz).")
@click.option("--from-tags", is_flag=True,
              help="LABELS are library folders: learn from the genres people set in the tags "
                   "(never the ones genre-tagger wrote).")
@train_options
def train(labels: tuple[str, ...], out: str, from_tags: bool, **kw: Any) -> None:
    """Train a model on your labels: a folder with one sub-folder per genre, a CSV
    (path,genres; ';' between genres), or --from-tags ROOT... ."""
    from tagger.training import labels as label_sources
    from tagger.training.trainer import features_for, require_learner
    from tagger.training.trainer import train as do_train

    options = _train_options(kw)
    require_learner(options.pooling)  # before minutes of decoding, not after
    min_files = kw.pop("min_files")
    settings = settings_from(kw, check_genres=False)  # checked against the labels, below
    if not labels:
        raise click.UsageError("give a labels folder or CSV, or --from-tags and library folders")
    if not from_tags and len(labels) > 1:
        raise click.UsageError("one labels folder or CSV (several folders: --from-tags)")
    require_ffmpeg()
    with _open_cache(settings.cache_url) as cache:
        if from_tags:
            found = label_sources.from_tags([str(Path(r).absolute()) for r in labels], cache,
                                            min_files, settings.genres)
        else:
            found = label_sources.load_labels(str(Path(labels[0]).absolute()), min_files,
                                              settings.genres)
        genre_map_for_labels(settings, found)
        _report_labels(found)
        data, base = features_for(found, settings, cache, _say)
    source = "tags under " + ", ".join(labels) if from_tags else labels[0]
    model = do_train(data, base, options, out, _say, source, found.vocabulary)
    _say(f"wrote {display(out)}: {model.version}, {len(model.classes)} genres "
         f"({', '.join(model.classes)}); use it with --model {display(out)}")


@main.command()
@click.argument("labels", type=click.Path(exists=True))
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Judge this trained model on all of LABELS (default: train on part of "
                   "LABELS, judge on the rest).")
@click.option("--folds", type=click.IntRange(2), default=None,
              help="K-fold cross-validation instead of one split.")
@click.option("--test-share", type=click.FloatRange(0.05, 0.5), default=0.25, show_default=True,
              help="Share of the songs (whole artists, albums or folders) held out for testing.")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Where to draw the confusion matrix [default: confusion-matrix.png, when "
                   "matplotlib is installed: the [plots] extra].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write every number to this file.")
@train_options
def evaluate(labels: str, model_path: str | None, folds: int | None, test_share: float,
             png: str | None, json_out: str | None, **kw: Any) -> None:
    """Measure a model on labelled songs: accuracy, balanced accuracy, macro-F1, per-genre
    scores and a confusion matrix, next to two baselines on the same songs."""
    from tagger import plots
    from tagger.analysis.model.trained import load as load_model
    from tagger.training import labels as label_sources
    from tagger.training.metrics import confusion_text, per_class_text, summary_text
    from tagger.training.trainer import evaluate as judge
    from tagger.training.trainer import features_for, require_learner

    options = _train_options(kw)
    if model_path is None:  # folds and splits train heads; a trained model is NumPy's
        require_learner(options.pooling)
    min_files = kw.pop("min_files")
    # The map is checked against the labels (and a trained model's genres), below.
    settings = settings_from(kw, check_genres=False, **({"model": model_path} if model_path else {}))
    if png is not None:
        plots.require()  # asked for a picture: say how to get one before the work
    elif plots.available():
        png = "confusion-matrix.png"
    require_ffmpeg()
    with _open_cache(settings.cache_url) as cache:
        # A trained model is judged on every song of its genres, however few.
        found = label_sources.load_labels(str(Path(labels).absolute()),
                                          1 if model_path else min_files, settings.genres)
        genre_map_for_labels(settings, found)
        _report_labels(found)
        data, base = features_for(found, settings, cache, _say)
    judged = judge(data, base, options, _say, load_model(model_path) if model_path else None,
                   settings.genres, folds, test_share)
    reports, spreads = [r for r, _ in judged], [s for _, s in judged]
    for r, spread in zip(reports, spreads):
        click.echo(summary_text(r, spread))
    click.echo("")
    click.echo(per_class_text(reports[0]))
    click.echo("")
    click.echo("confusion matrix (rows: true genre, columns: answer)")
    click.echo(confusion_text(reports[0]))
    failed = False
    try:
        if png is not None:
            plots.confusion_png(reports[0], png)
            _say(f"confusion matrix drawn in {display(png)}")
        else:
            _say(f"(no picture: {plots.HINT})")
        if json_out:
            Path(json_out).write_text(as_json_text(
                [{**r.as_dict(), "spread": s} for r, s in zip(reports, spreads)]) + "\n")
    except OSError as e:  # the numbers are printed already; say what could not be kept
        _say(f"error: cannot write {e.filename}: {e.strerror or e}")
        failed = True
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@main.command()
@click.argument("roots", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--back", "go_back", is_flag=True,
              help="Return to the model in use before the last switch (and re-decide the files).")
@library_options
@setting_options("policy", "model", "learn_margin", *ANALYSIS)
def learn(roots: tuple[str, ...], go_back: bool, **kw: Any) -> None:
    """Learn your genres from the ones people set in the library under ROOTS (never the ones
    genre-tagger wrote), from stored analyses; switch to the new model only when it is right
    more often on songs it never saw, then re-decide genre-tagger's own genres. The daemon
    does the same by itself with learn = true."""
    from tagger.training import learning
    from tagger.training.trainer import require_learner

    settings = settings_from(kw, roots=list(roots) or None)
    if not settings.roots:
        raise click.UsageError("name the library's folders (genre-tagger learn /srv/music) or "
                               "set roots in the config")
    if not go_back:
        if settings.policy == "overwrite":
            raise SetupProblem("learning needs policy 'missing' or 'merge': 'overwrite' replaces "
                               "the genres people set, which learning learns from")
        require_learner("svm", "learn")
    require_ffmpeg()  # re-deciding after a switch analyses the files never analysed
    with _open_cache(settings.cache_url) as cache:
        done = learning.back(settings, cache) if go_back else learning.learn(settings, cache, _say)
        click.echo(display(done.said))
        if done.result in ("switched", "back"):
            _redecide(settings, cache)
    sys.exit(EXIT_FAILED if done.result in ("busy", "stopped") else EXIT_OK)


def _redecide(settings: Settings, cache: Cache) -> None:
    """After a switch: every file under the roots decided again under the model now in use,
    from the stored analyses (the policy keeps a person's genres)."""
    from tagger.services import scanner

    def changed(o: Outcome) -> None:
        if o.decision == "write" and o.new is not None:
            click.echo(_change(o))

    report = scanner(settings, cache).run(on_outcome=changed)
    _say(report.summary())


def _change(o: Outcome) -> str:
    """One file's change, as ``scan`` and a re-decision print it (as beets does)."""
    return f"{display(o.path)}: {_genres(o.old)} -> {_genres(o.new)}"


# --- the daemon: watch, status ------------------------------------------------------------------


@main.command()
@click.argument("roots", nargs=-1, type=click.Path(exists=True, file_okay=False))
@CONFIG
@setting_options("policy", "observer", "settle_seconds", "database", "device", "model",
                 "log_level", "album", "learn", "listen")
def watch(roots: tuple[str, ...], config_path: Path | None, **flags: Any) -> None:
    """Watch music folders and tag new or changed files (the daemon systemd runs)."""
    stop, reload = Flag(), Flag()  # first: a signal during the start-up is kept, not fatal
    on_signals({signal.SIGTERM: stop.set, signal.SIGINT: stop.set, signal.SIGHUP: reload.set})
    from tagger.daemon.service import Daemon, setup_logging

    overrides = {**flags, "roots": list(roots) or None}

    def load_config() -> Settings:  # again on SIGHUP
        return load_settings(config_path, overrides=overrides, require_roots=True)

    try:
        settings = load_config()
    except ConfigError as e:
        raise SetupProblem(f"configuration: {display(str(e))}") from None
    require_ffmpeg()
    setup_logging(settings.log_level)
    rc = Daemon(load_config, stop, reload).run()
    # Stopped: more signals mean nothing now, and Python's exit would put back the default
    # handlers, so one arriving then would kill the process (exit -2 instead of 0).
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(rc)


@main.command()
@click.argument("roots", nargs=-1, type=click.Path(exists=True, file_okay=False))
@library_options
@setting_options("listen", "web_read_only", "policy", "model")
def serve(roots: tuple[str, ...], **kw: Any) -> None:
    """Serve the page: see the library and the decisions, listen, correct and revert in a
    browser (this machine only unless 'listen' and 'web_secret' say otherwise)."""
    from tagger import web
    from tagger.settings import DEFAULT_LISTEN

    if roots:
        kw["roots"] = list(roots)
    settings = settings_from(kw)
    if not settings.roots:
        raise SetupProblem("the page plays and writes only files under the library's roots: "
                           "name them (genre-tagger serve /srv/music) or set roots in the config")
    web.require()
    sock = web.bind(settings.listen)
    where = settings.listen or DEFAULT_LISTEN
    host, port = where.rsplit(":", 1)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '[::]') else host}:{port}/"
    with _open_cache(settings.cache_url) as cache:
        click.echo(f"genre-tagger's page: {url}"
                   + (" (read-only)" if settings.web_read_only else "")
                   + (" (asks for web_secret)" if settings.web_secret else ""), err=True)
        web.serve(settings, cache, sock)


def _status_cache(url: str | None, as_json: bool) -> Cache:
    """The cache for ``status``, which only looks: a SQLite database that is not there is not
    created (an empty one would say "never ran" while a daemon may be tagging without its
    memory); none, or a damaged one, is said in plain words (exit 2)."""
    from tagger.cache import Cache
    from tagger.errors import CacheUnavailable

    try:
        return Cache(url, create=False)
    except CacheUnavailable as e:
        if e.problem is not None and e.path is not None:
            _cache_problem(e.problem, e.path, e.detail or "", as_json)
        raise SetupProblem(display(str(e))) from None


def _cache_problem(problem: str, path: str, detail: str, as_json: bool) -> NoReturn:
    """Exit 2 saying that the SQLite cache at ``path`` is ``missing`` or ``damaged``; with
    ``--json`` the same as JSON on stdout (``"cache": "missing" | "damaged"``)."""
    where = os.path.abspath(path)
    if problem == "missing":
        text = (f"there is no cache database at {where}: genre-tagger has not run with this "
                "configuration, or the database was deleted")
    else:
        text = (f"the cache database at {where} is damaged ({detail}): genre-tagger cannot read "
                "it. Move it aside and the next run starts a new, empty one (without what "
                "'revert' needs to put genres back)")
    if as_json:
        click.echo(as_json_text({"state": "unknown", "cache": problem, "database": where,
                                 "message": text}))
    raise SetupProblem(display(text))


@main.command()
@click.option("--json", "as_json", is_flag=True)
@cache_options
def status(as_json: bool, **kw: Any) -> None:
    """What the daemon is doing: state, queue, throughput, failures, last errors."""
    import datetime
    import socket

    from sqlalchemy.exc import SQLAlchemyError

    from tagger.cache.queue import overview
    from tagger.cache.store import default_url, is_damaged, sqlite_file
    from tagger.errors import first_line
    from tagger.library.learned import describe

    settings = settings_from(kw)
    try:
        with _status_cache(settings.cache_url, as_json) as cache:
            info = overview(cache, settings.status_seconds)
            info["model"] = describe(cache, settings)
            # the daemons' own setting (their config may not be this command's)
            info["model"]["learn"] = settings.learn or any(d["learn"] for d in info["daemons"])
    except SQLAlchemyError as problem:  # it opened, then a page read was damaged
        path = sqlite_file(settings.cache_url or default_url())
        if path is not None and is_damaged(problem):
            _cache_problem("damaged", path, first_line(getattr(problem, "orig", None) or problem),
                           as_json)
        raise SetupProblem("cannot read the cache database: "
                                 f"{display(first_line(problem))}") from None
    here = socket.gethostname()
    daemons = info["daemons"]
    if as_json:
        click.echo(as_json_text(info))
        return

    def who(d: dict[str, Any]) -> str:
        where = "" if d["host"] == here else f"on {d['host']}, "
        return f"({where}pid {d['pid']}, up {datetime.timedelta(seconds=d['up_seconds'])})"

    if len(daemons) > 1:
        click.echo(f"daemons: {len(daemons)} running")
        for d in daemons:
            click.echo(f"  {who(d)}: {d['processed']} processed, {d['files_per_minute']} files/min")
    else:
        click.echo(f"daemon: {info['state']}" + (f" {who(daemons[0])}" if daemons else ""))
    if info["roots"]:
        ways = info["watched"]
        how = (f" ({ways['inotify']} folders by inotify, {ways['polling']} by polling)"
               if any(ways.values()) else "")
        click.echo(f"watching: {', '.join(display(r) for r in info['roots'])}{how}")
    click.echo(f"queue: {info['queue']} files; processed today: {info['processed_today']}"
               + (f"; {info['files_per_minute']} files/min since start" if daemons else ""))
    _model_lines(info["model"])
    if info["failures"]:
        click.echo("failures: " + ", ".join(f"{k} {v}" for k, v in info["failures"].items()))
    for e in info["last_errors"]:
        click.echo(f"  {display(e['path'])}: {display(e['reason'] or e['code'] or '')}")
