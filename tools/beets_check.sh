#!/usr/bin/env bash
# The README's two recipes for beets that did not come from a venv, run as written with the
# system's own python3 (PEP 668 holds there), each ending in a real `beet import` with `auto: yes`
# and a `beet genre-predict` that sets genres:
#
#   tools/beets_check.sh
#
# 1. beets from pipx: `pipx install beets`, then `pipx inject beets .` (this folder);
# 2. beets from apt: a venv of its own with both, `python3 -m venv V && V/bin/pip install beets .`.
# Everything goes into a temporary HOME (pipx's home and bin folder with it); nothing outside it
# changes. Needs pipx (Debian: `apt install pipx`) and PyPI.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin  # the system's python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" PIPX_HOME="$work/home/.local/pipx" PIPX_BIN_DIR="$work/home/.local/bin"
mkdir -p "$HOME"
! python3 -m pip install --dry-run beets >/dev/null 2>&1 \
  || echo "(this python3 takes pip installs: PEP 668 does not hold here)"

# Two songs of an album with no genre, as-is import (beets does not write those; the plugin does).
ffmpeg -v error -f lavfi -i "sine=frequency=330:duration=10" -f lavfi -i "anoisesrc=d=10:a=0.1" \
  -filter_complex amix=inputs=2 -ac 1 -metadata artist=Check -metadata album=Recipes \
  -metadata title=One -c:a flac "$work/one.flac"
ffmpeg -v error -i "$work/one.flac" -metadata title=Two -c copy "$work/two.flac"

check() {  # check NAME BEET: import the two songs with that beet, then genre-predict
  local name=$1 beet=$2 dir="$work/$1"
  mkdir -p "$dir/in" "$dir/beetsdir"
  cp "$work/one.flac" "$work/two.flac" "$dir/in/"
  cat > "$dir/beetsdir/config.yaml" <<EOF
directory: $dir/library
library: $dir/library.db
plugins: genrepredict
import: {copy: yes, write: yes, autotag: no, quiet: yes}
genrepredict: {auto: yes, min_confidence: 0.01, cache_db: "sqlite:///$dir/cache.sqlite"}
EOF
  export BEETSDIR="$dir/beetsdir"
  "$beet" import -A "$dir/in"
  local f genres=() g
  for f in "$dir"/library/*/*/*.flac; do  # what a player reads from the files beets copied
    g=$(ffprobe -v error -show_entries format_tags=genre -of default=nw=1:nk=1 "$f")
    [[ -n "$g" ]] || { echo "$name: import with auto: yes wrote no genre to $f" >&2; exit 1; }
    genres+=("$(basename "$f"): $g")
  done
  (( ${#genres[@]} == 2 )) || { echo "$name: beets imported ${#genres[@]} files, not 2" >&2; exit 1; }
  "$beet" genre-predict
  echo "$name: beets $("$beet" version | sed -n 's/^beets version //p'), on import: ${genres[*]}"
}

echo ">> beets from pipx: pipx install beets; pipx inject beets .   ($(pipx --version))"
pipx install -q beets >/dev/null 2>&1 || pipx install beets
pipx inject beets "$here"
check pipx "$PIPX_BIN_DIR/beet"

echo ">> beets from apt: python3 -m venv ~/beets && ~/beets/bin/pip install beets .   ($(python3 -V))"
python3 -m venv "$HOME/beets"
"$HOME/beets/bin/pip" install -q beets "$here"
check venv "$HOME/beets/bin/beet"
echo "beets check: both recipes tag on import"
