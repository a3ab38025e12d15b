#!/usr/bin/env bash
# Install genre-tagger as a system service, the way Debian 12 and Ubuntu 24.04 allow it.
#
#   sudo systemd/install.sh /srv/music [/more/music ...]
#
# Why a virtual environment: those systems refuse `sudo pip install` into their own Python
# (PEP 668, "externally-managed-environment"), and pipx puts the program in the installing
# user's home, which the service's user cannot (and under ProtectHome= may not) run. So the
# program lives in /opt/genre-tagger, a venv of the system's own python3 that root owns and
# everyone may read; the unit's ExecStart points into it, and /usr/local/bin/genre-tagger links
# to it for the person at the shell.
#
# It is safe to run again (an upgrade: the venv is reinstalled from this folder, the config and
# the cache are kept). Settings, in the environment:
#   PREFIX=/opt/genre-tagger   where the venv goes
#   EXTRAS=                    extras to add, e.g. EXTRAS=gpu or EXTRAS=gpu,plots
#   START=auto                 auto: enable and start the service when systemd runs; no: don't
#   LISTEN=                    the page's address (e.g. 127.0.0.1:8337): adds the web extra, a
#                              drop-in that lets the service listen there, and `listen` to the
#                              config; an address beyond this machine also gets a web_secret
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/genre-tagger}
EXTRAS=${EXTRAS:-}
START=${START:-auto}
LISTEN=${LISTEN:-}
if [[ -n "$LISTEN" ]]; then
  [[ "$LISTEN" =~ ^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]+$ ]] \
    || { echo "LISTEN must be HOST:PORT, such as 127.0.0.1:8337, not '$LISTEN'" >&2; exit 2; }
  EXTRAS=${EXTRAS:+$EXTRAS,}web
fi
user=genre-tagger
state=/var/lib/genre-tagger

(( $# >= 1 )) || { echo "usage: sudo $0 MUSIC_FOLDER [MORE ...]" >&2; exit 2; }
(( EUID == 0 )) || { echo "run it as root (sudo $0 $*): it creates a user and a service" >&2; exit 2; }
roots=()
for r in "$@"; do
  [[ -d "$r" ]] || { echo "$r: no such folder" >&2; exit 2; }
  roots+=("$(realpath "$r")")
done
python=$(command -v python3) || { echo "python3 is needed: apt install python3 python3-venv" >&2; exit 2; }
"$python" -c 'import ensurepip' 2>/dev/null \
  || { echo "python3's venv module is needed: apt install python3-venv" >&2; exit 2; }
command -v ffmpeg >/dev/null || echo "note: ffmpeg is needed to decode music: apt install ffmpeg" >&2

echo ">> $PREFIX: a venv of $python, with genre-tagger from $here${EXTRAS:+ [$EXTRAS]}"
"$python" -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install -q --upgrade pip
"$PREFIX/bin/python" -m pip install -q --upgrade "$here${EXTRAS:+[$EXTRAS]}"
chmod -R a+rX "$PREFIX"
ln -sfn "$PREFIX/bin/genre-tagger" /usr/local/bin/genre-tagger

echo ">> the service's user: $user (no login, home $state)"
id -u "$user" >/dev/null 2>&1 \
  || useradd --system --home-dir "$state" --no-create-home --shell /usr/sbin/nologin "$user"
install -d -m 0700 -o "$user" -g "$user" "$state"

echo ">> /etc/genre-tagger/config.toml"
install -d -m 0755 /etc/genre-tagger
list=$(printf '"%s", ' "${roots[@]}")
if [[ ! -e /etc/genre-tagger/config.toml ]]; then
  printf 'roots = [%s]\n' "${list%, }" > /etc/genre-tagger/config.toml
else
  echo "   kept as it is; it says: $(grep -m1 '^roots' /etc/genre-tagger/config.toml || echo 'no roots')"
  echo "   (the folders given now are [${list%, }]: edit it if they differ, then systemctl reload genre-tagger)"
fi
host=${LISTEN%:*}
loopback=no
[[ "$host" =~ ^(127\.[0-9.]+|localhost|\[::1\])$ ]] && loopback=yes
if [[ -n "$LISTEN" ]]; then
  # Top-level keys go first: a line after a [genres] table would belong to it.
  if grep -q '^listen *=' /etc/genre-tagger/config.toml; then
    echo "   it sets listen already: $(grep -m1 '^listen' /etc/genre-tagger/config.toml) (LISTEN=$LISTEN not written)"
  else
    sed -i "1i listen = \"$LISTEN\"" /etc/genre-tagger/config.toml
  fi
  # It may hold the page's password: readable by root and the service only, before it does.
  chgrp "$user" /etc/genre-tagger/config.toml
  chmod 0640 /etc/genre-tagger/config.toml
  if [[ $loopback == no ]] && ! grep -q '^web_secret *=' /etc/genre-tagger/config.toml; then
    secret=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
    sed -i "1i web_secret = \"$secret\"" /etc/genre-tagger/config.toml
    echo "   the page asks for a password: web_secret in /etc/genre-tagger/config.toml"
  fi
fi

echo ">> /etc/systemd/system/genre-tagger.service (ExecStart in $PREFIX)"
sed "s#^ExecStart=[^ ]*genre-tagger#ExecStart=$PREFIX/bin/genre-tagger#" \
  "$here/systemd/genre-tagger.service" > /etc/systemd/system/genre-tagger.service
chmod 0644 /etc/systemd/system/genre-tagger.service
# The library is the one place besides its state the service may write (ProtectSystem=strict).
install -d /etc/systemd/system/genre-tagger.service.d
{ echo "[Service]"; for r in "${roots[@]}"; do echo "ReadWritePaths=$r"; done; } \
  > /etc/systemd/system/genre-tagger.service.d/library.conf
# The unit keeps the service off the network; the page needs its address, and only that.
page=/etc/systemd/system/genre-tagger.service.d/page.conf
if [[ -n "$LISTEN" ]]; then
  {
    echo "# The page (LISTEN=$LISTEN): sockets of the internet families, on the host's network."
    echo "[Service]"
    echo "PrivateNetwork=no"
    echo "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"
    if [[ $loopback == yes ]]; then
      echo "IPAddressAllow=localhost"
    else
      echo "IPAddressDeny="
    fi
  } > "$page"
  echo ">> $page: the service may listen on $LISTEN"
fi

if [[ "$START" != no && -d /run/systemd/system ]]; then
  systemctl daemon-reload
  systemctl enable --now genre-tagger
  echo ">> running: journalctl -u genre-tagger -f; sudo -u $user genre-tagger status --db sqlite:///$state/cache.sqlite"
  [[ -z "$LISTEN" ]] || echo ">> the page: http://$LISTEN/"
else
  echo ">> installed; start it with: systemctl daemon-reload && systemctl enable --now genre-tagger"
fi
