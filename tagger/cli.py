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
