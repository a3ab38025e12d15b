"""The prediction cache: SQLite (or any SQLAlchemy URL) holding every prediction and every write."""

from tagger.cache.store import Cache, Intent, TrackRow, default_url

__all__ = ["Cache", "Intent", "TrackRow", "default_url"]
