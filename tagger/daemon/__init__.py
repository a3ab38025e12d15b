"""``genre-tagger watch``: watch music folders, queue what changes, tag it; run by systemd."""
