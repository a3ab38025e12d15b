"""The library teaches it by itself (opt-in: ``learn = true`` for the daemon, or
``genre-tagger learn``).

One round: gather the genres people set in the library (a file's own genres, never the ones
genre-tagger wrote: :func:`tagger.training.labels.person_genres`), train a candidate on their
stored features (nothing is decoded: a file not analysed yet waits for the daemon), and judge
it against the model in use on songs that model never learnt from. The candidate is judged out
of fold: each song by a candidate trained without its group (artist, album or folder). It
replaces the model in use only when

* it is right on at least ``learn_margin`` more of those songs than the model in use,
* it answers (does not abstain) at least as often, and
* it is right on at least ``learn_margin`` more of them than always answering the commonest
  genre: labels that do not follow the audio (a bulk edit gone wrong, genres set at random)
  teach nothing, whatever the model in use scores on them.

Every decision, both scores, the candidate's file and the model it replaced are kept in the
cache (:mod:`tagger.cache.learning`); :func:`back` returns to the previous model. After a switch
the front doors re-decide the files whose genres are ours from the stored features, under the
policy (a person's genres are the policy's to keep, and learning refuses ``overwrite``).
"""

from __future__ import annotations

import datetime
import hashlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tagger.analysis.embedding import unpack
from tagger.analysis.model.resolved import Model, open_model
from tagger.cache import Cache
from tagger.cache.learning import Decisions, Learnt
from tagger.errors import LabelError, LearningMoved, TagError
from tagger.formats.identity import trusted
from tagger.library.learned import model_name, models_dir, resolve, when
from tagger.settings import Settings
from tagger.stopping import Flag, Stop
from tagger.training.labels import Labelled, group_of, label_key, label_set, person_genres
from tagger.training.trainer import (
    Bags,
    Fitted,
    TrainOptions,
    fit_svm,
    require_learner,
    same_genre,
    save_model,
)

Say = Callable[[str], None]
#: Genres with fewer labelled songs are left out (as ``train --min-files``' default).
MIN_FILES = 10
#: Fewer held-out songs than this say too little to replace a model (one song would be 5 %).
MIN_COMPARED = 20
#: Groups needed to hold any out (as the default head's own cross-validation).
MIN_GROUPS = 3
FOLDS = 5
#: The candidate's seed: the same labels give the same candidate.
SEED = 0

#: What a round came to. ``waiting``: too few labels to learn or to judge; ``unchanged``: the
#: labels are the ones the last decision saw; ``busy``: another process is learning.
Result = Literal["switched", "kept", "back", "waiting", "unchanged", "busy", "stopped"]


@dataclass(frozen=True)
class Round:
    result: Result
    said: str  # in words, for the log and the command
    row: Learnt | None = None  # the decision recorded, if any


@dataclass(frozen=True)
class Tally:
    """How a model did on the songs it was judged on."""

    songs: int
    right: int
    answered: int

    @property
    def right_share(self) -> float:
        return self.right / self.songs if self.songs else 0.0

    @property
    def answered_share(self) -> float:
        return self.answered / self.songs if self.songs else 0.0


def tally(answers: Sequence[str | None], truth: Sequence[Sequence[str]],
          words: Sequence[str] | None = None) -> Tally:
    """Answers against the songs' labels: right when the song carries the answer (case, spaces
    and punctuation aside: the shipped "Hip-Hop" is a person's "hiphop"); no answer is not
    right. An answer counts as one only in ``words`` (the genres the labels use) when given: a
    shipped model that says "Jazz" of every Tango answers nothing in that person's words (it
    did, in bench/bench_learn.py: 95 % answered, 1 % right, and a candidate right on 89 %
    was refused for answering less)."""
    right = sum(a is not None and any(same_genre(a, g) for g in t) for a, t in zip(answers, truth))
    answered = sum(a is not None and (words is None or any(same_genre(a, w) for w in words))
                   for a in answers)
    return Tally(len(answers), right, answered)


def commonest(truth: Sequence[Sequence[str]]) -> Tally:
    """Always answering the genre most of these songs carry: the best constant answer,
    known only afterwards (so a hard bar for a candidate to clear)."""
    counts = Counter(label_key(g) for t in truth for g in dict.fromkeys(t))
    best = max(counts.values(), default=0)
    return Tally(len(truth), best, len(truth))


def needed(margin: float, songs: int) -> int:
    """How many more songs a candidate must get right: the margin's share, at least one."""
    return max(1, math.ceil(margin * songs - 1e-9))


def verdict(current: Tally, candidate: Tally, constant: Tally, margin: float,
            current_name: str) -> tuple[bool, str]:
    """Whether the candidate replaces the model in use, and why, in words (pure). Counted in
    songs, so a margin is never met or missed by a rounding."""
    more = needed(margin, candidate.songs)
    c, m, b = candidate.right_share, current.right_share, constant.right_share
    scores = (f"the candidate was right on {c:.2f} of {candidate.songs} held-out songs, "
              f"{current_name} on {m:.2f}; answering {candidate.answered_share:.2f} vs "
              f"{current.answered_share:.2f}")
    if candidate.right < constant.right + more:
        return False, (f"{scores}: no better than always answering the commonest genre "
                       f"({b:.2f}) by {margin:.2f}: the labels do not follow the audio closely "
                       "enough to learn from")
    if candidate.right < current.right + more:
        return False, f"{scores}: not better by the margin ({margin:.2f}, {more} songs)"
    if candidate.answered < current.answered:
        return False, f"{scores}: it would leave more songs without genres"
    return True, f"{scores}: better by at least {margin:.2f}"


def song_key(audio_id: str, genres: Sequence[str]) -> str:
    """A labelled song: its audio and its labels (a corrected label is a new song to judge on)."""
    return f"{audio_id}|{';'.join(sorted(g.casefold() for g in genres))}"


def digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


@dataclass
class Labels:
    """The library's person-set labels that have stored features."""

    data: Bags
    audio: list[str]  # each song's audio identity
    vocabulary: list[str]
    notes: list[str]

    @property
    def keys(self) -> list[str]:
        return [song_key(a, f.genres) for a, f in zip(self.audio, self.data.files)]


def gather(settings: Settings, cache: Cache, base_version: str,
           stop: Stop | None = None) -> Labels:
    """Every file under the roots whose genres a person set, with its stored features (read
    from the cache by audio identity; nothing decoded). Reads each file's tags (about 0.3 ms
    a file: 10 s for 30,000)."""
    from tagger.tags import read_genres

    stop = stop or Flag()
    tags = settings.tag_options()
    files: list[Labelled] = []
    audio: dict[str, str] = {}
    seen: dict[str, tuple[int | None, int | None]] = {}
    unreadable = ours = 0
    for row in cache.rows_under(settings.roots):
        if stop.is_set():
            raise LabelError("stopped while reading the tags")
        if row.status in ("deleted", "failed") or not trusted(row.audio_id):
            continue
        try:
            current = read_genres(row.path, tags)
        except TagError:
            unreadable += 1
            continue
        genres = person_genres(current, row.genres_written, row.genres_before)
        if not genres:
            ours += bool(current)
            continue
        files.append(Labelled(row.path, tuple(genres), group_of(row.path, genres=genres)))
        audio[row.path] = str(row.audio_id)
        seen[row.path] = (row.size, row.mtime_ns)
    # A write of ours in flight when the tags were read (renamed, not yet recorded) would look
    # like a person's edit: files with a write intent now, or recorded anew since, are left out.
    writing = {i.path for i in cache.intents()}
    now = cache.stat_index(paths=[f.path for f in files]) if files else {}
    files = [f for f in files if f.path not in writing and now.get(f.path) is not None
             and (now[f.path].size, now[f.path].mtime_ns) == seen[f.path]]
    stored = cache.features(audio.values(), base_version)
    with_features = [f for f in files if audio[f.path] in stored]
    notes = [f"{len(files)} files carry genres a person set; {ours} only genres genre-tagger wrote"]
    if len(with_features) < len(files):
        notes.append(f"{len(files) - len(with_features)} of them are not analysed yet")
    if unreadable:
        notes.append(f"{unreadable} files' tags could not be read")
    labels = label_set(with_features, MIN_FILES, [], settings.genres)
    if labels.dropped:
        rare = ", ".join(f"{g} ({n})" for g, n in labels.dropped.items())
        notes.append(f"too few songs (under {MIN_FILES}) of {rare}")
    ids = [audio[f.path] for f in labels.files]
    found = [stored[a] for a in ids]
    return Labels(Bags(labels.files, [unpack(s.data) for s in found],
                       [s.raw_scores for s in found]), ids, labels.vocabulary, notes)


def first_choice(model: Model, scores: dict[str, float] | None, settings: Settings) -> str | None:
    """What a model would write first on a song under the settings' selection and genre map
    (None: it abstains): both models are judged by what they would write."""
    chosen = model.choose(scores, settings.selection()) if scores else []
    return chosen[0][0] if chosen else None


def _answers_of(model: Model, data: Bags, idx: Sequence[int], settings: Settings,
                ) -> list[str | None]:
    """The model in use on each song, from its stored analysis."""
    return [first_choice(model, model.scores(data.bags[i], data.raw[i]), settings) for i in idx]


@dataclass(frozen=True)
class Candidate:
    """A candidate fitted on every labelled song, and its answers out of fold.

    The default head cross-validates over whole groups anyway (to choose its regularisation,
    temperature and thresholds): each song's probabilities there come from a fold that held its
    artist, album or folder out, so one fit judges it (2,000 songs: 6x faster than a fit per
    fold; bench/bench_learn.py). Only those few settings saw every fold. ``unjudgeable``: songs
    no fold could hold out: a fold holding out a genre's only group (its songs all come from one
    artist, album or folder) is not used, as a candidate without that group cannot know the
    genre; neither model is judged on them."""

    fitted: Fitted
    answers: dict[int, str | None]
    unjudgeable: list[int]


def candidate(data: Bags, judged_on: Sequence[int], options: TrainOptions,
              settings: Settings) -> Candidate:
    """Fit the default head on ``data``; judge it on ``judged_on`` by what it would write
    (:func:`first_choice`), from each song's out-of-fold probabilities."""
    from tagger.analysis.model.trained import TrainedModel

    classes = sorted({g for f in data.files for g in f.genres})
    multi_label = any(len(f.genres) > 1 for f in data.files)
    arrays, thresholds, summary, oof = fit_svm(data, classes, multi_label, options,
                                               lambda _: None)
    model = Model("candidate", TrainedModel(
        "", "candidate", {"classes": classes, "multi_label": multi_label,
                          "pooling": options.pooling,
                          "thresholds": [float(t) for t in thresholds]}, arrays))
    row = {i: j for j, i in enumerate(oof.index)} if oof is not None else {}
    answers: dict[int, str | None] = {}
    unjudgeable: list[int] = []
    for i in judged_on:
        if oof is None or i not in row:
            unjudgeable.append(i)
            continue
        probs = oof.probs[row[i]]
        answers[i] = first_choice(model, {c: float(p) for c, p in zip(classes, probs)}, settings)
    return Candidate((arrays, thresholds, summary), answers, unjudgeable)


def learn(settings: Settings, cache: Cache, say: Say, stop: Stop | None = None) -> Round:
    """One round (see the module's docstring); the caller re-decides the files after a switch.
    Only one process learns at a time."""
    require_learner("svm", "learn")
    decisions = Decisions(cache)
    holder = decisions.claim()
    if holder is not None:
        return Round("busy", f"another process is learning now ({holder})")
    try:
        done = _round(settings, cache, decisions, say, stop or Flag())
        if done.result != "stopped":
            decisions.looked(settings.model, done.said)
        return done
    finally:
        decisions.release()


def _round(settings: Settings, cache: Cache, decisions: Decisions, say: Say, stop: Stop) -> Round:
    start = decisions.latest(settings.model)
    after = start.id if start is not None else None
    in_use = resolve(settings, cache)
    model = open_model(in_use.settings.model)
    name = model_name(settings.model, in_use.switch)
    try:
        labels = gather(settings, cache, model.base_version, stop)
    except LabelError as e:
        if stop.is_set():
            return Round("stopped", "stopped before deciding")
        return Round("waiting", f"not enough labels yet: {e}")
    for note in labels.notes:
        say(f"learning: {note}")
    keys = labels.keys
    label_digest = digest(keys)
    if start is not None and start.digest == label_digest:
        return Round("unchanged", "the labels are the ones learning last decided on "
                     f"({when(start.created_at)}): nothing new to learn from")
    # Judged on songs the model in use never learnt from, nor their artist, album or folder:
    # a learnt model knows its groups, as the candidate judged out of fold does not.
    seen, seen_groups = (decisions.trained_on(in_use.switch.id) if in_use.switch
                         else (set(), set()))
    files = labels.data.files
    fresh = [i for i, k in enumerate(keys) if k not in seen and files[i].group not in seen_groups]
    groups = {files[i].group for i in fresh}
    if len(fresh) < MIN_COMPARED or len(groups) < MIN_GROUPS:
        return Round("waiting", f"{len(fresh)} labelled songs from {len(groups)} artists, "
                     f"albums or folders that {name} never learnt from; {MIN_COMPARED} songs "
                     f"from {MIN_GROUPS} are needed to judge a new model against it")
    options = TrainOptions(pooling="svm", seed=SEED)
    say(f"learning: {len(keys)} labelled songs; judging a candidate and {name} on {len(fresh)} "
        "of them")
    decisions.claim()  # the lease, renewed: the fit may take minutes on a large library
    cand = candidate(labels.data, fresh, options, settings)
    if stop.is_set():
        return Round("stopped", "stopped before deciding")
    decisions.claim()
    judged_on = sorted(cand.answers)
    if len(judged_on) < MIN_COMPARED:
        return Round("waiting", f"only {len(judged_on)} songs could be judged (the other "
                     f"{len(cand.unjudgeable)} were held out with a genre whose songs all come "
                     f"from one artist, album or folder); {MIN_COMPARED} are needed")
    truth = [files[i].genres for i in judged_on]
    words = labels.vocabulary
    t_cand = tally([cand.answers[i] for i in judged_on], truth, words)
    t_cur = tally(_answers_of(model, labels.data, judged_on, settings), truth, words)
    switch, why = verdict(t_cur, t_cand, commonest(truth), settings.learn_margin, name)
    if cand.unjudgeable:
        why += (f" ({len(cand.unjudgeable)} songs not judged: held out with a genre whose "
                "songs all come from one artist, album or folder)")
    values: dict[str, Any] = {
        "current_version": model.version, "songs": len(keys), "compared": t_cand.songs,
        "current_right": t_cur.right_share,
        "candidate_right": t_cand.right_share, "current_answered": t_cur.answered_share,
        "candidate_answered": t_cand.answered_share, "margin": settings.learn_margin,
        "digest": label_digest}
    now_in_use = in_use.switch.id if in_use.switch else None
    try:
        if not switch:
            row = decisions.record(settings.model, "kept", why, after=after, in_use=now_in_use,
                                   previous=now_in_use, **values)
            return Round("kept", f"kept {name}: {why}", row)
        folder = models_dir(cache)
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"learned-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.npz"
        made = save_model(labels.data, model.base, options, str(out),
                          "the genres people set in the library (learn)", labels.vocabulary,
                          cand.fitted)
        try:
            row = decisions.record(settings.model, "switched", why, after=after, in_use=None,
                                   previous=now_in_use, data=out.read_bytes(),
                                   trained_songs=keys,
                                   trained_groups=sorted({f.group for f in files}),
                                   version=made.version, **values)
        except LearningMoved:
            out.unlink(missing_ok=True)
            raise
    except LearningMoved:
        return Round("stopped", "the model in use changed while learning ('learn --back', or "
                     "another process): nothing decided")
    return Round("switched", f"switched to {made.version}: {why}", row)


def back(settings: Settings, cache: Cache) -> Round:
    """Return to the model in use before the last switch (recorded as one more decision; the
    labels it saw are not learnt from again until they change)."""
    decisions = Decisions(cache)
    last = decisions.latest(settings.model)
    switch = decisions.in_use(settings.model, last)
    if last is None or switch is None:
        return Round("waiting", "the 'model' setting's own model is in use: there is nothing to "
                     "go back from")
    previous = decisions.get(switch.previous) if switch.previous is not None else None
    why = (f"went back from {switch.version} to {model_name(settings.model, previous)} "
           "('genre-tagger learn --back')")
    try:
        row = decisions.record(settings.model, "back", why, after=last.id, in_use=switch.previous,
                               previous=switch.id, current_version=switch.version,
                               digest=last.digest)
    except LearningMoved:
        return Round("stopped", "another decision was recorded meanwhile: nothing done; look "
                     "with 'genre-tagger status' and try again")
    return Round("back", why, row)


__all__ = ["Candidate", "Round", "Tally", "back", "candidate", "commonest", "digest",
           "first_choice", "gather", "learn", "needed", "song_key", "tally", "verdict"]
