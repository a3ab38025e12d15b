"""``genre-tagger``: the command line. Parses options into one :class:`EngineConfig` and hands
files to the engine; knows nothing of how genres are computed."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import click

from tagger import __version__
from tagger.config import DEFAULT_BUDGET, EngineConfig
from tagger.engine import Failure, Prediction, Result
from tagger.model.catalog import DEFAULT_MODEL, MODELS
from tagger.taxonomy import Selection

AUDIO_EXTENSIONS = {".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".alac",
                    ".wav", ".aif", ".aiff", ".wma", ".asf", ".wv", ".ape", ".mpc"}


def _budget(value: str) -> int | None:
    if value.lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter("a positive number of windows, or 'all'") from None
    if n < 1:
        raise click.BadParameter("a positive number of windows, or 'all'")
    return n


def expand(paths: Sequence[str]) -> Iterator[str]:
    """Files as given; folders walked for audio files by extension, in a stable order."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file():
                    yield str(f)
        else:
            yield p


def engine_options(f: Any) -> Any:
    """The engine's options, shared by every command that analyses audio."""
    opts = [
        click.option("--model", type=click.Choice(sorted(MODELS)), default=DEFAULT_MODEL,
                     show_default=True, help="Which shipped model to run."),
        click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default="auto",
                     show_default=True, help="auto uses a GPU when the backend sees one."),
        click.option("--batch-size", type=click.IntRange(1), default=None,
                     help="Windows per model call [default: 16 on CPU, 256 on GPU]."),
        click.option("--jobs", "-j", type=click.IntRange(1), default=None,
                     help="Files decoded in parallel [default: up to 4 CPUs]."),
        click.option("--budget", default=str(DEFAULT_BUDGET), show_default=True,
                     help="Windows analysed per track, spread evenly; 'all' for every window."),
        click.option("--window-hop", type=click.FloatRange(0.1), default=3.0, show_default=True,
                     help="Seconds between window starts (3 = no overlap)."),
        click.option("--top-k", type=click.IntRange(1), default=Selection.top_k,
                     show_default=True, help="At most this many genres per file."),
        click.option("--min-confidence", type=click.FloatRange(0, 1),
                     default=Selection.min_confidence, show_default=True,
                     help="Abstain when no genre scores at least this."),
        click.option("--timeout", type=click.FloatRange(1), default=120.0, show_default=True,
                     help="Seconds a file may take to decode."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def make_config(kw: dict[str, Any]) -> EngineConfig:
    from tagger.features import HOP, SAMPLE_RATE

    defaults = EngineConfig()
    return EngineConfig(
        model=kw["model"], device=kw["device"], batch_size=kw["batch_size"],
        jobs=kw["jobs"] or defaults.jobs, budget=_budget(kw["budget"]),
        window_hop=max(1, round(kw["window_hop"] * SAMPLE_RATE / HOP)),
        decode_timeout=kw["timeout"],
        selection=Selection(top_k=kw["top_k"], min_confidence=kw["min_confidence"]),
    )


def _as_json(r: Result) -> dict[str, Any]:
    if isinstance(r, Failure):
        return {"path": r.path, "ok": False, "error": r.code, "reason": r.reason}
    return {"path": r.path, "ok": True, "genres": [{"genre": g, "confidence": round(s, 4)}
                                                   for g, s in r.genres],
            "genre_scores": {k: round(v, 4) for k, v in r.genre_scores.items()},
            "raw": {k: round(v, 4) for k, v in r.raw.items()},
            "windows": r.windows, "seconds": round(r.seconds, 2), "model": r.model_version}


def _as_line(r: Prediction) -> str:
    if not r.genres:
        return f"{r.path}: (no genre reached the minimum confidence)"
    return f"{r.path}: " + ", ".join(f"{g} {s:.2f}" for g, s in r.genres)


def run_predict(paths: list[str], config: EngineConfig, as_json: bool) -> int:
    """Predict, print, and return the exit code (1 if any file failed)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tagger.engine import Engine

    err = Console(stderr=True)
    with err.status("loading the model..."):
        engine = Engine(config)
    failures = 0
    results: list[dict[str, Any]] = []
    show_bar = len(paths) > 1 and err.is_terminal
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), console=err, disable=not show_bar, transient=True,
                  redirect_stdout=False) as bar:
        task = bar.add_task("analysing", total=len(paths))
        for r in engine.predict_paths(paths):
            bar.advance(task)
            if isinstance(r, Failure):
                failures += 1
                err.print(f"[red]error[/red] {r.path}: {r.reason}", highlight=False, markup=True,
                          soft_wrap=True)
            elif not as_json:
                if show_bar and sys.stdout.isatty():  # same terminal: print above the bar
                    bar.console.print(_as_line(r), highlight=False, markup=False, soft_wrap=True)
                else:
                    click.echo(_as_line(r))
            results.append(_as_json(r))
    if as_json:
        json.dump(results, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    if failures:
        err.print(f"{failures} of {len(paths)} files failed", highlight=False)
    return 1 if failures else 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="genre-tagger")
def main() -> None:
    """Fill in genre tags by listening to the audio, offline."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine output with every raw score.")
@engine_options
def predict(files: tuple[str, ...], as_json: bool, **kw: Any) -> None:
    """Predict the genres of FILES (folders are searched for audio files)."""
    paths = list(expand(files))
    if not paths:
        raise click.UsageError("no audio files found in the given folders")
    sys.exit(run_predict(paths, make_config(kw), as_json))


@main.command()
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the example files here and keep them.")
@click.option("--json", "as_json", is_flag=True, help="Machine output with every raw score.")
@engine_options
def demo(keep: Path | None, as_json: bool, **kw: Any) -> None:
    """Synthesise a few example pieces (no network needed) and predict their genres."""
    from tagger.demo import write_demo

    with tempfile.TemporaryDirectory(prefix="genre-tagger-demo-") as tmp:
        files = write_demo(keep or Path(tmp))
        sys.exit(run_predict([str(f) for f in files], make_config(kw), as_json))


# --- library commands: scan, revert, show, stats ------------------------------------------------


def cache_option(f: Any) -> Any:
    return click.option("--db", "db_url", default=None, metavar="URL",
                        help="Cache database (any SQLAlchemy URL) [default: sqlite in "
                             "~/.local/state/genre-tagger/].")(f)


def tag_options(f: Any) -> Any:
    opts = [
        click.option("--id3v23", is_flag=True,
                     help="Write ID3v2.3 (genres joined) instead of keeping each file's version."),
        click.option("--id3-separator", default="; ", show_default=True,
                     help="How ID3v2.3 joins several genres."),
        click.option("--touch", is_flag=True,
                     help="Let tag writes update the files' mtime (kept by default)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _tag_options(kw: dict[str, Any]) -> Any:
    from tagger.tags import TagOptions

    return TagOptions(id3_version=3 if kw.pop("id3v23") else None,
                      id3v23_separator=kw.pop("id3_separator"), keep_mtime=not kw.pop("touch"))


def _open_cache(url: str | None) -> Any:
    from tagger.cache import Cache

    return Cache(url)


@main.command()
@click.argument("roots", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("--policy", type=click.Choice(["missing", "merge", "overwrite"]), default="missing",
              show_default=True, help="missing: only files without genres; merge: keep theirs, "
                                      "add ours; overwrite: replace.")
@click.option("--dry-run", is_flag=True, help="Print old -> new for each file; write nothing.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a machine-readable report to this file.")
@cache_option
@tag_options
@engine_options
def scan(roots: tuple[str, ...], policy: str, dry_run: bool, json_out: Path | None,
         db_url: str | None, **kw: Any) -> None:
    """Analyse every audio file under ROOTS and write genre tags per the policy."""
    import signal
    import threading

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tagger.scan import Scanner, ScanOptions, resolve

    tags = _tag_options(kw)
    options = ScanOptions(roots=resolve(roots), policy=policy, dry_run=dry_run, tags=tags)  # type: ignore[arg-type]
    err = Console(stderr=True)
    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("stopping after the files in flight (Ctrl-C again to abort)...")

    previous = signal.signal(signal.SIGINT, on_sigint)
    with _open_cache(db_url) as cache:
        scanner = Scanner(options, make_config(kw), cache)
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
                      console=err, disable=not err.is_terminal, transient=True,
                      redirect_stdout=False) as bar:
            task = bar.add_task("scanning", total=None)

            def on_outcome(o: Any) -> None:
                bar.advance(task)
                if o.error:
                    err.print(f"[red]error[/red] {o.path}: {o.reason}", highlight=False)
                elif dry_run and o.new is not None:
                    click.echo(f"{o.path}: {'; '.join(o.old or []) or '(none)'} -> {'; '.join(o.new)}")

            report = scanner.run(stop, on_total=lambda n: bar.update(task, total=n),
                                 on_outcome=on_outcome)
    signal.signal(signal.SIGINT, previous)
    c = report.counts
    fails = ", ".join(f"{k} {v}" for k, v in report.failures.most_common()) or "none"
    files = sum(c[a] for a in ("unchanged", "analysed", "reused", "moved", "failed"))
    err.print(f"{'dry run: ' if dry_run else ''}{files} files: "
              f"{c['analysed']} analysed, {c['reused'] + c['moved']} from the cache "
              f"({c['moved']} moved), {c['unchanged']} unchanged; {c['tagged']} "
              f"{'would be ' if dry_run else ''}tagged, {c['abstained']} abstained, "
              f"{sum(v for k, v in c.items() if k.startswith('left:'))} left as they were; "
              f"failed: {fails}"
              f"{' (interrupted: run the same scan again to resume)' if report.interrupted else ''}",
              highlight=False)
    if json_out:
        json_out.write_text(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    sys.exit(130 if report.interrupted else 0)


@main.command()
@click.argument("roots", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--dry-run", is_flag=True, help="Print what would be put back; write nothing.")
@cache_option
@tag_options
def revert(roots: tuple[str, ...], dry_run: bool, db_url: str | None, **kw: Any) -> None:
    """Put back the genres files under ROOTS had before genre-tagger changed them."""
    from tagger.scan import resolve
    from tagger.scan import revert as do_revert

    tags = _tag_options(kw)
    with _open_cache(db_url) as cache:
        outcomes = do_revert(resolve(roots), cache, tags, dry_run)
    for o in outcomes:
        if o.action == "reverted":
            click.echo(f"{o.path}: {'; '.join(o.old or [])} -> {'; '.join(o.new or []) or '(none)'}")
        else:
            click.echo(f"{o.path}: skipped: {o.reason}", err=True)
    done = sum(o.action == "reverted" for o in outcomes)
    click.echo(f"{'would revert' if dry_run else 'reverted'} {done} files, "
               f"skipped {len(outcomes) - done}", err=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True)
@cache_option
def show(files: tuple[str, ...], as_json: bool, db_url: str | None) -> None:
    """Print what the cache knows about FILES."""
    import datetime

    with _open_cache(db_url) as cache:
        rows = [(f, cache.get(str(Path(f).absolute()))) for f in files]
    if as_json:
        click.echo(json.dumps([{"path": f, **(r.__dict__ if r else {"known": False})} for f, r in rows],
                              indent=2, ensure_ascii=False))
        return
    missing = 0
    for f, r in rows:
        if r is None:
            missing += 1
            click.echo(f"{f}: not in the cache")
            continue
        when = (datetime.datetime.fromtimestamp(r.analysed_at).isoformat(" ", "seconds")
                if r.analysed_at else "-")
        error = f" ({r.error_code}: {r.error_reason})" if r.error_code else ""
        click.echo(f"{r.path}\n  status: {r.status}{error}")
        click.echo(f"  model: {r.model_version}, analysed {when}")
        click.echo(f"  genres chosen: {', '.join(r.genres_chosen) or '(none)'}")
        click.echo(f"  written: {'; '.join(r.genres_written) if r.genres_written is not None else '(never)'}"
                   f"; before us: {'; '.join(r.genres_before or []) or '(none)'}")
        top = sorted(r.genre_scores.items(), key=lambda kv: -kv[1])[:6]
        click.echo("  genre scores: " + ", ".join(f"{g} {s:.2f}" for g, s in top))
        raw = sorted(r.raw_scores.items(), key=lambda kv: -kv[1])[:8]
        click.echo("  top raw tags: " + ", ".join(f"{t} {s:.2f}" for t, s in raw))
    sys.exit(1 if missing else 0)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@cache_option
def stats(as_json: bool, db_url: str | None) -> None:
    """Summarise the library as the cache sees it."""
    with _open_cache(db_url) as cache:
        s = cache.summary()
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    total = sum(s["by_status"].values())
    click.echo(f"{total} files known: " + ", ".join(f"{v} {k}" for k, v in sorted(s["by_status"].items())))
    click.echo(f"{s['tagged']} carry genres written by genre-tagger")
    if s["genres"]:
        click.echo("by genre: " + ", ".join(f"{g} {n}" for g, n in list(s["genres"].items())[:20]))
    if s["failures"]:
        click.echo("failures: " + ", ".join(f"{k} {v}" for k, v in s["failures"].items()))


# --- the daemon: watch, status ------------------------------------------------------------------


@main.command()
@click.argument("roots", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="TOML config [default: ~/.config/genre-tagger/config.toml, "
                                 "or /etc/genre-tagger/config.toml as root].")
@click.option("--policy", type=click.Choice(["missing", "merge", "overwrite"]), default=None)
@click.option("--observer", type=click.Choice(["auto", "inotify", "polling"]), default=None)
@click.option("--settle", "settle_seconds", type=click.FloatRange(0), default=None,
              help="Seconds a file's size and mtime must stay unchanged before it is analysed.")
@click.option("--db", "database", default=None, metavar="URL")
@click.option("--device", type=click.Choice(["auto", "cpu", "gpu"]), default=None)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
def watch(roots: tuple[str, ...], config_path: Path | None, **flags: Any) -> None:
    """Watch music folders and tag new or changed files (the daemon systemd runs)."""
    from tagger.daemon.service import Daemon, setup_logging
    from tagger.daemon.settings import ConfigError, load

    overrides = {k: v for k, v in flags.items() if v is not None}
    if roots:
        overrides["roots"] = list(roots)

    def load_config() -> Any:
        return load(config_path, overrides=overrides)

    try:
        cfg = load_config()
    except ConfigError as e:
        raise click.ClickException(f"configuration: {e}") from None
    setup_logging(cfg.log_level)
    sys.exit(Daemon(load_config).run())


@main.command()
@click.option("--db", "db_url", default=None, metavar="URL")
@click.option("--json", "as_json", is_flag=True)
def status(db_url: str | None, as_json: bool) -> None:
    """What the daemon is doing: state, queue, throughput, failures, last errors."""
    import datetime
    import os
    import time

    from tagger.daemon.queue import DaemonState, WorkQueue

    with _open_cache(db_url) as cache:
        state = DaemonState(cache).get()
        queued = len(WorkQueue(cache))
        summary = cache.summary()
        errors = cache.last_errors(5)
    pid = state.get("pid")
    alive = False
    if pid and state.get("state") == "running":
        try:
            os.kill(int(pid), 0)
            alive = True
        except (OSError, ValueError):
            alive = False
    up = time.time() - state.get("started_at", time.time())
    info = {"state": ("running" if alive else "not running") if state else "never ran",
            "pid": pid if alive else None, "roots": state.get("roots", []), "queue": queued,
            "processed": state.get("processed", 0),
            "processed_today": state.get("processed_today", 0)
            if state.get("processed_day") == time.strftime("%Y-%m-%d") else 0,
            "files_per_minute": round(state.get("processed", 0) / up * 60, 2) if alive and up > 0 else None,
            "failures": summary["failures"], "last_errors": errors}
    if as_json:
        click.echo(json.dumps(info, indent=2, ensure_ascii=False))
        return
    click.echo(f"daemon: {info['state']}" + (f" (pid {pid}, up {datetime.timedelta(seconds=int(up))})"
                                             if alive else ""))
    if info["roots"]:
        click.echo(f"watching: {', '.join(info['roots'])}")
    click.echo(f"queue: {queued} files; processed today: {info['processed_today']}"
               + (f"; {info['files_per_minute']} files/min since start" if alive else ""))
    if summary["failures"]:
        click.echo("failures: " + ", ".join(f"{k} {v}" for k, v in summary["failures"].items()))
    for e in errors:
        click.echo(f"  {e['path']}: {e['reason']}")
