"""genre-tagger: fill in genre tags by listening to the audio, offline."""

from tagger.memory import limit_malloc_arenas

__version__ = "0.1.0"

# Before any thread of ours exists, whichever front door imported us (see tagger.memory).
limit_malloc_arenas()
