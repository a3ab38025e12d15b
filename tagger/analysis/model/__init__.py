"""The MIL genre model: the musicnn window CNN, the song-level MIL wrapper, weights and runner."""
