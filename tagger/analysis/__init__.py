"""Audio in, scores out: decode (in child processes), log-mel windows, the window CNN, the
multiple-instance average, and the taxonomy from raw tags to genres. Pure computation but for the
decoder children; nothing here knows about libraries, caches or tags."""
