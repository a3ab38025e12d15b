#!/usr/bin/env bash
# The README's service and beets recipes on a real Ubuntu 24.04 (Python 3.12, systemd 255): a
# minimal Ubuntu built with debootstrap into a folder, this folder copied in, and inside it
# (chroot) tools/service_check.sh and tools/beets_check.sh exactly as they run on Debian 12.
#
#   sudo tools/ubuntu_check.sh
#
# Needs root, debootstrap (Debian: `apt install debootstrap`) and archive.ubuntu.com; about
# 3 minutes and 1 GB of disk, all removed at the end. If the archive cannot be reached, it says
# so and ends 0 without checking (nothing was tried); any failure after that fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mirror=${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
root=$(mktemp -d /var/tmp/noble.XXXXXX)
chmod 0755 "$root"  # its / (mktemp made it 0700: the service's user could not reach anything)
mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT

scripts=/usr/share/debootstrap/scripts
# Debian 12's debootstrap predates 24.04; every Ubuntu release since 7.10 uses the same script.
[[ -e $scripts/noble ]] || ln -s gutsy "$scripts/noble"
echo ">> debootstrap noble (Ubuntu 24.04) from $mirror"
if ! debootstrap --variant=minbase --components=main,universe noble "$root" "$mirror" \
    > "$root.log" 2>&1; then
  tail -5 "$root.log"; rm -f "$root.log"
  echo "ubuntu check: skipped, Ubuntu's archive could not be reached or unpacked"
  exit 0
fi
rm -f "$root.log"
printf 'deb %s noble main universe\ndeb %s noble-updates main universe\n' "$mirror" "$mirror" \
  > "$root/etc/apt/sources.list"
for m in proc sys dev dev/pts; do mount --bind "/$m" "$root/$m"; mounts+=("$root/$m"); done
cp /etc/resolv.conf "$root/etc/"
inside() { chroot "$root" env DEBIAN_FRONTEND=noninteractive "$@"; }
inside apt-get update -q >/dev/null
inside apt-get install -y -q --no-install-recommends python3 python3-venv ffmpeg systemd util-linux \
  passwd ca-certificates pipx >/dev/null 2>&1
# This machine's own certificate authorities (a proxy's, say), as Ubuntu adds local ones: pip
# inside reaches PyPI the way pip outside does.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  inside update-ca-certificates >/dev/null 2>&1
fi
echo ">> $(inside sh -c '. /etc/os-release; echo "$PRETTY_NAME"'), $(inside python3 -V), $(inside systemd-analyze --version | head -1)"
mkdir "$root/src"
(cd "$here" && git ls-files -z | tar --null -T - -c) | tar -x -C "$root/src"
inside bash -c "cd /src && bash tools/service_check.sh"
inside bash -c "cd /src && bash tools/beets_check.sh" | grep -v "^Created database backup"
echo "ubuntu check: the service and beets recipes work on Ubuntu 24.04"
