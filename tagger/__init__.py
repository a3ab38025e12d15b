"""genre-tagger: fill in genre tags by listening to the audio, offline."""

__version__ = "0.1.0"
