"""The page's routes: see the library, the decisions and a track, listen, correct and revert.

Built on Starlette (routing, forms, files with HTTP ranges) and Jinja2 templates; the browser
gets HTML that works without JavaScript, and ``page.js`` only adds seeking to the windows that
decided. Safe by default (:class:`Guard`):

- without ``web_secret`` it answers only requests addressed to this machine (the Host header
  must name a loopback address: a web site that points its own name at 127.0.0.1, DNS
  rebinding, gets nothing), and ``listen`` beyond this machine is refused at load;
- with ``web_secret`` every request needs the session cookie the login sets (or the secret
  as a bearer token);
- every write is a POST carrying the page's CSRF token, from a page of this origin;
- no path from a request reaches the file system: tracks are named by their row id, and a
  row's file is opened only if its real location is under the roots (the descriptor that is
  served is the one checked: a folder swapped for a symlink meanwhile changes nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import mimetypes
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from tagger.cache import Cache, browse
from tagger.cache.learning import Decisions
from tagger.cache.queue import WorkQueue, overview
from tagger.display import display
from tagger.errors import NoTimeline
from tagger.library.albums import describe as album_words
from tagger.library.learned import describe as model_words
from tagger.library.learned import judged, when
from tagger.library.policy import same_genres
from tagger.library.tagging import Outcome, correct, in_words, revert_file
from tagger.library.walk import real_roots
from tagger.settings import Settings
from tagger.tags import TagOptions, genres_or_reason
from tagger.tags.safe_write import open_under
from tagger.web.views import Drawing, Pager, clock, drawing, parse_genres, parse_seen

HERE = Path(__file__).parent
PAGE_SIZE = 50
#: How long the library's genre counts are kept (a daemon's writes show after this).
GENRES_SECONDS = 30.0
#: The page's claims in the work queue (see Page._apply).
_CLAIM = "page"
SESSION_COOKIE = "genre_tagger_session"
#: How long a sign-in lasts; changing web_secret ends every session at once.
SESSION_SECONDS = 30 * 86400
#: A wrong password waits this long: guessing is slow, a person barely notices.
LOGIN_DELAY = 1.0
#: Guesses waiting their turn at most, of one address and in all; more are answered 429 at once.
WAITING_EACH = 2
MAX_WAITING = 10
#: Where Guard leaves who is asking for the routes (see Guard.session).
_SESSION = "genre_tagger.session"
_ISSUED = re.compile(r"[0-9]{1,12}")
#: A track's row id in a URL (SQLite's integers are 64-bit; longer is no row).
_ROW_ID = re.compile(r"[0-9]{1,18}")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
#: Headers a reverse proxy adds: without web_secret, the page is this machine's only.
_PROXIED = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via")


@dataclass(frozen=True)
class Keys:
    """The page's secrets, made once per process: the key session cookies are signed with and
    the key CSRF tokens are made with (both from ``web_secret``, so sessions and open pages
    survive a restart). Both come through scrypt (40 ms, once): a cookie or a token
    someone saw is no fast way to try passwords offline, outside the sign-in line."""

    secret: str
    session: bytes
    csrf: bytes

    @classmethod
    def make(cls, secret: str) -> Keys:
        if secret:
            root = hashlib.scrypt(secret.encode(), salt=b"genre-tagger page", n=2**14, r=8, p=1)
            session = hmac.new(root, b"genre-tagger session", hashlib.sha256).digest()
            csrf = hmac.new(root, b"genre-tagger csrf", hashlib.sha256).digest()
        else:  # no secret: nothing to derive from; a restart asks for a reload of open pages
            session, csrf = b"", os.urandom(32)
        return cls(secret, session, csrf)

    def csrf_token(self, session: str) -> str:
        """The token a page's forms carry for ``session`` (the signed-in cookie; "" without
        web_secret, or with the bearer token): never shown to whoever is not signed in, and a
        new one with each sign-in."""
        return hmac.new(self.csrf, b"write " + session.encode(), hashlib.sha256).hexdigest()

    def session_cookie(self, now: float) -> str:
        """A session signed in at ``now``: ``ISSUED.MAC``, so a stolen or forgotten cookie
        stops working after :data:`SESSION_SECONDS` without the server keeping sessions."""
        issued = str(int(now))
        return f"{issued}.{hmac.new(self.session, issued.encode(), hashlib.sha256).hexdigest()}"

    def signed_in(self, cookie: str, now: float) -> bool:
        issued, _, _mac = cookie.partition(".")
        # ASCII digits only, and few (str.isdigit takes "²", int() refuses 5,000 digits)
        if not _ISSUED.fullmatch(issued) or not now - SESSION_SECONDS <= int(issued) <= now + 60:
            return False
        return hmac.compare_digest(cookie.encode(), self.session_cookie(int(issued)).encode())

    def cookie_session(self, cookie_header: str, now: float) -> str | None:
        """The session cookie's value when it is signed and current, else None."""
        for part in cookie_header.split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and self.signed_in(value, now):
                return value
        return None


def bearer_token(authorization: str) -> bytes | None:
    """The token an ``Authorization: Bearer`` header gives, as the client's bytes (header text
    arrives decoded as latin-1; a client sends a secret's UTF-8), or None."""
    scheme, _, token = authorization.partition(" ")
    return token.encode("latin-1") if scheme.lower() == "bearer" else None


class Turns:
    """Password checks, one at a time, for the sign-in form and bearer tokens alike: each guess
    is compared only in its turn, and a wrong one holds the line :data:`LOGIN_DELAY`, so
    guesses sent side by side are still one a second in all (compared outside the line, the
    right one of a batch would answer at once). At most :data:`WAITING_EACH` guesses of one
    address wait, and :data:`MAX_WAITING` in all; beyond that a guess is refused (429) without
    being compared. So one address flooding the line keeps the others waiting seconds, not
    shut out (behind a proxy every browser is the proxy's address)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.waiting: Counter[str] = Counter()

    async def check(self, given: bytes, secret: str, who: str) -> bool | None:
        """Whether ``given`` (from the address ``who``) is the secret; None: too many are
        waiting, try again soon."""
        if self.waiting[who] >= WAITING_EACH or self.waiting.total() >= MAX_WAITING:
            return None
        self.waiting[who] += 1
        try:
            async with self.lock:
                right = bool(secret) and hmac.compare_digest(given, secret.encode())
                if not right:
                    await asyncio.sleep(LOGIN_DELAY)
                return right
        finally:
            self.waiting[who] -= 1
            if not self.waiting[who]:
                del self.waiting[who]


def _loopback_host(host: str) -> bool:
    """Whether a Host header (``name``, ``name:port``, ``[v6]:port``) names this machine."""
    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Guard:
    """Who may ask what, before any route runs (see the module's docstring)."""

    OPEN = ("/login", "/static/")

    def __init__(self, app: ASGIApp, keys: Keys, turns: Turns) -> None:
        self.app = app
        self.keys = keys
        self.turns = turns

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if not self.keys.secret and not _loopback_host(headers.get("host", "")):
            await PlainTextResponse(
                "This page answers only at this machine's own address (127.0.0.1 or localhost): "
                "set web_secret to reach it under another name.", 421)(scope, receive, send)
            return
        if not self.keys.secret and any(h in headers for h in _PROXIED):
            await PlainTextResponse(
                "This request came through a proxy: set web_secret for the page to be reached "
                "through one.", 421)(scope, receive, send)
            return
        if (headers.get("sec-fetch-site") in ("cross-site", "same-site")
                and headers.get("sec-fetch-mode") != "navigate"):
            # another site's page embedding or fetching ours (its audio, say): only links in
            await PlainTextResponse("Not for other sites' pages.", 403)(scope, receive, send)
            return
        session = await self.session(headers, _client(scope))
        if session is False:
            await PlainTextResponse("Too many sign-in attempts at once: try again in a moment.",
                                    429, {"retry-after": "5"})(scope, receive, send)
            return
        scope[_SESSION] = session  # decided once: the routes' token and sign-out follow it
        if not path.startswith(self.OPEN) and session is None:
            if scope["method"] in ("GET", "HEAD"):
                query = scope.get("query_string", b"").decode("latin-1")
                back = path + (f"?{query}" if query else "")
                await RedirectResponse(f"/login?next={quote(back)}", 303)(scope, receive, send)
            else:
                await PlainTextResponse("Sign in first.", 401)(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD", "POST"):
            await PlainTextResponse("Not here.", 405)(scope, receive, send)
            return
        if scope["method"] == "POST" and not _same_origin(headers):
            await PlainTextResponse("This request came from another site's page; refused.",
                                    403)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def session(self, headers: dict[str, str], who: str) -> str | Literal[False] | None:
        """Who is asking: "" without web_secret (this machine only) or for the right bearer
        token (a script), the cookie's value for a signed-in browser, None for nobody, False
        when a bearer token could not be checked (too many guesses waiting)."""
        if not self.keys.secret:
            return ""
        token = bearer_token(headers.get("authorization", ""))
        if token is not None:
            right = await self.turns.check(token, self.keys.secret, who)
            return False if right is None else ("" if right else None)
        return self.keys.cookie_session(headers.get("cookie", ""), time.time())


def _client(scope: Scope) -> str:
    """The address a request came from ("" over a Unix socket)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


def _here(nxt: str) -> str:
    """Where to go after signing in: a path on this site, never another site's address."""
    return nxt if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt else "/"


def _https(request: Request) -> bool:
    """Whether the browser reached the page over HTTPS: directly, or through a proxy that
    says so (X-Forwarded-Proto, Forwarded's proto=; uvicorn trusts only a proxy on this
    machine for the scheme, and a cookie marked Secure over plain HTTP only fails to sign in)."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return forwarded == "https" or "proto=https" in request.headers.get("forwarded", "").lower()


def session_of(request: Request) -> str | None:
    """Who is asking, as :class:`Guard` decided (None: not signed in)."""
    got = request.scope.get(_SESSION)
    return got if isinstance(got, str) else None


def _same_origin(headers: dict[str, str]) -> bool:
    """A POST's Origin (else Referer) names this page's host, or is absent (a script with the
    token: the CSRF token still decides)."""
    origin = headers.get("origin") or headers.get("referer")
    if not origin:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == headers.get("host", "")


class HeldFile(FileResponse):
    """A file served from a descriptor this process opened and checked (not re-resolved from
    a path a writer could swap meanwhile); the descriptor is closed however the response ends."""

    def __init__(self, fd: int, media_type: str) -> None:
        super().__init__(f"/proc/self/fd/{fd}", media_type=media_type, stat_result=os.fstat(fd),
                         headers={"cache-control": "private, max-age=60",
                                  "x-content-type-options": "nosniff",
                                  "content-security-policy": "sandbox"})
        self.fd = fd

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Never handed to the server by name ("pathsend"): it would open the name after the
        # descriptor is closed, when the number may be another file's.
        extensions = {k: v for k, v in scope.get("extensions", {}).items()
                      if k != "http.response.pathsend"}
        try:
            await super().__call__({**scope, "extensions": extensions}, receive, send)
        finally:
            os.close(self.fd)


class Page:
    """The app's state: the settings, one cache, the keys; the routes are its methods."""

    def __init__(self, settings: Settings, cache: Cache, keys: Keys) -> None:
        self.settings = settings
        self.cache = cache
        self.keys = keys
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.writing = threading.Lock()  # one click's writes at a time (their queue claims)
        self.counting = threading.Lock()
        self._genres: tuple[float, browse.Genres] | None = None
        self.turns = Turns()
        env = self.templates.env
        env.filters["shown"] = lambda s: display(str(s))
        env.filters["genres"] = lambda g: "; ".join(display(x) for x in g) if g else ""
        env.filters["when"] = lambda t: when(t) if t else "-"
        env.filters["clock"] = clock
        env.globals["read_only"] = settings.web_read_only
        env.globals["reason_words"] = browse.REASON_WORDS

    # --- helpers -----------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        session = session_of(request)
        # the token and the sign-out only for a signed-in page (the sign-in page has neither)
        context.update(csrf=self.keys.csrf_token(session) if session is not None else "",
                       signed=bool(self.keys.secret and session))
        return self.templates.TemplateResponse(request, name, context, status_code=status,
                                               headers=_HEADERS)

    def short(self, path: str) -> str:
        """A path as the page shows it: under its root, without the root."""
        for root in self.settings.roots:
            if path.startswith(root.rstrip("/") + "/"):
                return display(path[len(root.rstrip("/")) + 1:])
        return display(path)

    def _listed(self, id: str) -> browse.Listed:
        """The row a URL's id names (digits only: "+1", "²" or 5,000 digits name none)."""
        found = browse.track(self.cache, int(id)) if _ROW_ID.fullmatch(id) else None
        if found is None:
            raise HTTPException(404, "No such track in the cache.")
        return found

    async def _posted(self, request: Request, writes: bool = True) -> FormData:
        """A POST's form, after its checks: the CSRF token is the page's, and for one that
        ``writes`` files, the page is not read-only."""
        if writes and self.settings.web_read_only:
            raise HTTPException(403, "The page is read-only (web_read_only = true): nothing is "
                                     "written from it.")
        form = await request.form(max_files=0, max_fields=5000)  # an album's seen-N fields
        token = str(form.get("csrf", ""))
        session = session_of(request)
        if session is None or not hmac.compare_digest(token.encode(),
                                                      self.keys.csrf_token(session).encode()):
            raise HTTPException(403, "The page was out of date (or not this one): reload it and "
                                     "try again.")
        return form

    # --- the library -------------------------------------------------------------------------

    def library(self, request: Request) -> Response:
        s = self.cache.summary(genres=False)
        g = self.genres()
        s["tagged"] = g.tagged
        info = overview(self.cache, self.settings.status_seconds, summary=s)
        history = Decisions(self.cache).history(self.settings.model, 10)
        return self.render(request, "library.html", summary=s, total=sum(s["by_status"].values()),
                           ours=g.ours.most_common(24), theirs=g.theirs.most_common(24),
                           unseen=g.unseen,
                           model=model_words(self.cache, self.settings), history=history,
                           judged=judged, info=info, roots=self.settings.roots)

    # --- decisions ---------------------------------------------------------------------------

    def decisions(self, request: Request) -> Response:
        q = request.query_params
        if any("\x00" in v for v in q.values()):  # (PostgreSQL's text cannot hold one)
            raise HTTPException(400, "A filter cannot hold a NUL character.")
        reason = q.get("reason", "all")
        order = q.get("order", "confidence")
        f = browse.Filters(reason=reason if reason in browse.REASONS else "all",
                           genre=q.get("genre", "").strip(), folder=q.get("folder", "").strip(),
                           album=q.get("album", ""), error=q.get("error", ""),
                           order=order if order in browse.ORDERS else "confidence")
        try:
            offset = min(max(int(q.get("offset", "0")), 0), 10**9)
        except ValueError:
            offset = 0
        t0 = time.perf_counter()
        rows, total = browse.decisions(self.cache, f, offset, PAGE_SIZE)
        ms = (time.perf_counter() - t0) * 1000
        keep = {k: v for k, v in q.items() if k != "offset" and v}
        return self.render(request, "decisions.html", rows=rows, f=f, pager=Pager(offset, PAGE_SIZE, total),
                           ms=ms, reasons=browse.REASONS, short=self.short, keep=keep,
                           album_words=album_words)

    # --- a track -----------------------------------------------------------------------------

    def track(self, request: Request) -> Response:
        listed = self._listed(request.path_params["id"])
        row = listed.row
        now, unreadable = self._genres_now(row.path)
        drawn, why_not, refused = self._drawn(row.path)
        members = browse.album(self.cache, row.album_key) if row.album_key else []
        album_decided = (row.decision_key or "").endswith("|album")
        mine = self.settings.genres.scores(row.genre_scores)
        top = sorted(mine.items(), key=lambda kv: -kv[1])[:8]
        words = in_words(row, now, self.settings.policy, self.settings.genres.same)
        member_now = {m.id: self._genres_now(m.row.path)[0] for m in members}
        return self.render(
            request, "track.html", t=listed, row=row, now=now, unreadable=unreadable,
            drawn=drawn, why_not=why_not, top=top, words=words, members=members,
            member_now=member_now, album_decided=album_decided,
            album_name=album_words(row.album_key) if row.album_key else None,
            playable=refused, short=self.short, offered=self._offered(),
            ours_now=row.genres_written is not None and now is not None
            and same_genres(now, row.genres_written), reason=browse.reason_of(row))

    def _genres_now(self, path: str) -> tuple[list[str] | None, str | None]:
        """The genres the file carries, read from it only if it is a file under the roots
        (the one checked: see :func:`tagger.tags.held_open`)."""
        return genres_or_reason(path, self.settings.tag_options(),
                                under=real_roots(self.settings.roots))

    def _drawn(self, path: str) -> tuple[Drawing | None, str | None, str | None]:
        """``(the file's timeline drawn from the cache, or None; why not; why the page may not
        open the file at all)``. Only a file under the roots, and the one checked: its stat
        and (when it changed) its audio are read through the descriptor found there."""
        from tagger.library.timeline import timeline
        from tagger.services import score_source

        try:
            fd = open_under(path, real_roots(self.settings.roots))
        except OSError as e:
            return None, str(e.strerror or e), str(e.strerror or e)
        try:
            return drawing(timeline(path, score_source(self.settings, self.cache), analyse=False,
                                    read_as=f"/proc/self/fd/{fd}")), None, None
        except NoTimeline as e:
            return None, str(e).split(": ", 1)[-1], None
        except OSError as e:
            return None, e.strerror or str(e), None
        finally:
            os.close(fd)

    def _offered(self) -> list[str]:
        """The names offered while typing genres: the map's (the model's genres in your words)
        and those a person's files carry."""
        from tagger.analysis.model.resolved import open_model

        genres, _ = open_model(self.settings.model).vocabulary()
        mine = set(self.settings.genres.scores(dict.fromkeys(genres, 0.0)))
        return sorted(mine | set(self.genres().theirs), key=str.casefold)

    def genres(self) -> browse.Genres:
        """The library's genres, counted at most every ``GENRES_SECONDS`` (the rows are read:
        200 ms on 50,000 tracks) and again after the page writes."""
        with self.counting:
            if self._genres is None or time.monotonic() - self._genres[0] > GENRES_SECONDS:
                self._genres = (time.monotonic(), browse.library_genres(self.cache))
            return self._genres[1]

    def audio(self, request: Request) -> Response:
        row = self._listed(request.path_params["id"]).row
        try:
            fd = open_under(row.path, real_roots(self.settings.roots))
        except FileNotFoundError:
            raise HTTPException(404, "The file is not there any more.") from None
        except OSError:
            raise HTTPException(403, "This file is not one the page may serve (not a file under "
                                     "the library roots).") from None
        kind = mimetypes.guess_type(row.path)[0] or "application/octet-stream"
        return HeldFile(fd, _AUDIO_TYPES.get(Path(row.path).suffix.lower(), kind))

    # --- corrections -------------------------------------------------------------------------

    async def set_genres(self, request: Request) -> Response:
        form = await self._posted(request)
        action = str(form.get("action", ""))
        if action not in ("revert", "accept", "replace"):
            raise HTTPException(400, "Unknown action.")
        try:
            genres = parse_genres(str(form.get("genres", "")))
        except ValueError as e:
            raise HTTPException(400, f"Those genres cannot be written: {e}.") from None
        outcomes = await run_in_threadpool(self._apply, request.path_params["id"], action,
                                           str(form.get("scope", "track")), genres, form)
        return self.render(request, "done.html", outcomes=outcomes, back=request.path_params["id"],
                           short=self.short, action=action)

    def _apply(self, id: str, action: str, scope: str, genres: list[str],
               form: FormData) -> list[Outcome]:
        """One click's writes, one at a time (the page's own lock), each file claimed in the
        work queue first: a daemon or a scan at work on it is never raced (the file is
        "busy": try again), and takes it only after."""
        listed = self._listed(id)
        targets = ([listed] if scope != "album" or not listed.row.album_key
                   else browse.album(self.cache, listed.row.album_key))
        tags = self.settings.tag_options()
        real = real_roots(self.settings.roots)
        work = WorkQueue(self.cache)
        out = []
        with self.writing:
            held = work.claim([t.row.path for t in targets], _CLAIM)
            try:
                for t in targets:
                    out.append(self._one(action, t, genres, form, held, tags, real))
            finally:
                work.release(drop=_CLAIM)
                with self.counting:
                    self._genres = None  # counted again: the page shows its own writes
        return out

    def _one(self, action: str, t: browse.Listed, genres: list[str], form: FormData,
             held: set[str], tags: TagOptions, real: tuple[str, ...]) -> Outcome:
        if t.row.path not in held:
            return Outcome(t.row.path, "skipped", reason="busy: the daemon (or a scan) is "
                                                         "working on it; try again in a moment")
        if action == "revert":
            return revert_file(t.row, self.cache, tags, real)
        shown = form.get(f"seen-{t.id}")
        if shown is None:  # joined the album after the page was drawn
            return Outcome(t.row.path, "skipped", reason="the page did not show it: reload")
        try:
            seen = parse_seen(str(shown))
        except ValueError:
            raise HTTPException(400, "The page sent what it showed in a form it cannot "
                                     "read: reload it.") from None
        return correct(t.row, seen if action == "accept" else genres, seen, self.cache, tags, real)

    # --- signing in --------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            nxt = _here(request.query_params.get("next", "/"))
            if self.keys.secret and session_of(request):  # signed in already: on to the page
                return RedirectResponse(nxt, 303)
            return self.render(request, "login.html", next=nxt, wrong=False)
        form = await request.form(max_files=0, max_fields=10)
        nxt = _here(str(form.get("next", "/")))
        right = await self.turns.check(str(form.get("password", "")).encode(), self.keys.secret,
                                       _client(request.scope))
        if right is None:
            busy = self.render(request, "login.html", status=429, next=nxt, busy=True)
            busy.headers["retry-after"] = "5"
            return busy
        if not right:
            return self.render(request, "login.html", status=401, next=nxt, wrong=True)
        response = RedirectResponse(nxt, 303)
        response.set_cookie(SESSION_COOKIE, self.keys.session_cookie(time.time()), httponly=True,
                            samesite="strict", secure=_https(request), max_age=SESSION_SECONDS)
        return response

    async def logout(self, request: Request) -> Response:
        await self._posted(request, writes=False)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(SESSION_COOKIE)
        return response


#: What browsers play, by extension (mimetypes does not know all of these everywhere).
_AUDIO_TYPES = {".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg",
                ".oga": "audio/ogg", ".opus": "audio/ogg", ".m4a": "audio/mp4", ".mp4": "audio/mp4",
                ".wav": "audio/wav", ".aac": "audio/aac", ".wma": "audio/x-ms-wma",
                ".aiff": "audio/aiff", ".aif": "audio/aiff", ".wv": "audio/x-wavpack"}
#: Every page: no framing by other sites, no sniffing, nothing loaded from elsewhere.
_HEADERS = {"content-security-policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
                                       "form-action 'self'; base-uri 'none'",
            "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
            "cache-control": "no-store"}


def _error_page(page: Page) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return page.render(request, "message.html", status=exc.status_code, message=exc.detail)
    return handle


def create_app(settings: Settings, cache: Cache) -> ASGIApp:
    """The page for ``settings`` over ``cache`` (which the caller opens and closes)."""
    keys = Keys.make(settings.web_secret)
    page = Page(settings, cache, keys)
    routes = [
        Route("/", page.library),
        Route("/decisions", page.decisions),
        Route("/track/{id}", page.track),
        Route("/track/{id}/audio", page.audio),
        Route("/track/{id}/genres", page.set_genres, methods=["POST"]),
        Route("/login", page.login, methods=["GET", "POST"]),
        Route("/logout", page.logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _error_page(page)})
    return Guard(app, keys, page.turns)


__all__ = ["Guard", "Keys", "Turns", "bearer_token", "create_app"]
