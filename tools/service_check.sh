#!/usr/bin/env bash
# The README's service install, checked on this machine (CI runs it as root; it changes the
# system: /opt/genre-tagger, /etc/genre-tagger, the unit, a user genre-tagger).
#
#   sudo tools/service_check.sh
#
# 1. systemd/install.sh with the system's own python3 (no venv made first; PEP 668 holds there);
# 2. the installed unit verified against the installed program;
# 3. the unit's own command line run as the service's user, with the unit's environment, on a
#    library that user may write: a file copied in is tagged, SIGTERM ends it with 0.
# Without systemd running (a container), the service is installed, not started (START=no).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin  # the system's python3
music=$(mktemp -d /srv/genre-tagger-check.XXXXXX 2>/dev/null || mktemp -d)
config=/etc/genre-tagger/config.toml
kept=$(mktemp)
had=no; [[ -e $config ]] && cp -p "$config" "$kept" && had=yes
restore() {
  kill "$pid" 2>/dev/null || true
  rm -rf "$music"
  if [[ $had == yes ]]; then cp -p "$kept" "$config"; else rm -f "$config"; fi
  rm -f "$kept"
}
trap restore EXIT
pid=

port=18337
echo ">> LISTEN=127.0.0.1:$port systemd/install.sh $music   (python3: $(command -v python3), $(python3 -V))"
START=no LISTEN=127.0.0.1:$port "$here/systemd/install.sh" "$music"
unit=/etc/systemd/system/genre-tagger.service
grep -q "^ExecStart=/opt/genre-tagger/bin/genre-tagger watch" "$unit"
/usr/local/bin/genre-tagger --version

echo ">> systemd-analyze verify $unit (with its drop-in)"
systemd-analyze verify "$unit"
grep -q "^ReadWritePaths=$music\$" /etc/systemd/system/genre-tagger.service.d/library.conf
grep -q "^IPAddressAllow=localhost\$" /etc/systemd/system/genre-tagger.service.d/page.conf
grep -q "^listen = \"127.0.0.1:$port\"\$" "$config"
[[ "$(stat -c %a:%G "$config")" == 640:genre-tagger ]]

echo ">> the unit's command, as the user genre-tagger, with the unit's environment"
chown genre-tagger: "$music"
printf 'listen = "127.0.0.1:%s"\nroots = ["%s"]\nmin_confidence = 0.01\n' "$port" "$music" \
  > "$config"  # put back at the end
cmd=$(sed -n 's/^ExecStart=//p' "$unit")
envs=$(sed -n 's/^Environment=//p' "$unit")
# shellcheck disable=SC2086  # the unit's words, split as systemd splits them
setpriv --reuid=genre-tagger --regid=genre-tagger --init-groups --inh-caps=+lease \
  --ambient-caps=+lease env -i PATH="$PATH" $envs $cmd \
  > "$music.log" 2>&1 &
pid=$!
died() { echo "the service's command ended by itself:" >&2; cat "$music.log" >&2; exit 1; }
for _ in $(seq 120); do
  grep -q "watching" "$music.log" && break
  kill -0 "$pid" 2>/dev/null || died
  sleep 1
done
ffmpeg -v error -f lavfi -i "sine=frequency=220:duration=12" -f lavfi -i "anoisesrc=d=12:a=0.05" \
  -filter_complex amix=inputs=2 -ac 1 -c:a flac "$music/.incoming.flac"
chown genre-tagger: "$music/.incoming.flac"
mv "$music/.incoming.flac" "$music/check.flac"
genres=
for _ in $(seq 120); do
  genres=$(/opt/genre-tagger/bin/python -c 'import sys, mutagen; print("; ".join(mutagen.File(sys.argv[1]).get("genre", [])))' "$music/check.flac")
  [[ -n "$genres" ]] && break
  kill -0 "$pid" 2>/dev/null || died
  sleep 1
done
page=$(/opt/genre-tagger/bin/python -c 'import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())' "http://127.0.0.1:$port/decisions")
grep -q "check.flac" <<<"$page" || { echo "the service's page does not list the file" >&2; exit 1; }
kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
cat "$music.log"; rm -f "$music.log"
[[ -n "$genres" ]] || { echo "the service's command did not tag the file" >&2; exit 1; }
(( rc == 0 )) || { echo "SIGTERM ended it with $rc" >&2; exit 1; }
[[ "$(stat -c %U "$music/check.flac")" == genre-tagger ]]
echo "service check: tagged '$genres' as genre-tagger, its page listed it, stopped with 0"
