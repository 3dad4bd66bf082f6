#!/usr/bin/env bash
# setup.sh: make sure the VM end-to-end tests can run on this machine.
#
#  - qemu-system-x86_64 is installed (apt-get install qemu-system-x86 when root);
#  - a Debian cloud kernel is extracted once into test/e2e/.cache/ (apt-get download +
#    dpkg-deb -x, never installed into /boot), and test/e2e/.cache/vmlinuz points at it.
#
# Idempotent: when both are present it only prints the kernel path.
# Environment: VATRUN_E2E_CACHE overrides the cache directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VATRUN_E2E_CACHE:-$here/.cache}
metapkg=linux-image-cloud-amd64

say() { printf 'e2e-setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

apt_updated=
apt_update_once() {
	[ -n "$apt_updated" ] && return 0
	is_root || return 1
	say "apt-get update"
	apt-get update -qq >&2 || die "apt-get update failed"
	apt_updated=1
}

# --- qemu -------------------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	if is_root; then
		apt_update_once
		say "installing qemu-system-x86"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >&2 ||
			die "apt-get install qemu-system-x86 failed"
	else
		die "qemu-system-x86_64 is missing: run 'sudo apt-get install qemu-system-x86' (or run this script as root)"
	fi
fi

# --- kernel -----------------------------------------------------------------
if [ -e "$cache/vmlinuz" ]; then
	say "kernel cached: $(readlink "$cache/vmlinuz")"
	printf '%s\n' "$cache/vmlinuz"
	exit 0
fi

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is missing (this script needs a Debian-based host)"
command -v apt-get >/dev/null 2>&1 || die "apt-get is missing (this script needs a Debian-based host)"

image_pkg() {
	apt-cache depends "$metapkg" 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n1
}

pkg=$(image_pkg || true)
if [ -z "$pkg" ]; then
	apt_update_once || die "apt-cache does not know $metapkg and apt-get update needs root"
	pkg=$(image_pkg || true)
fi
[ -n "$pkg" ] || die "could not find the image package $metapkg depends on (apt-cache depends $metapkg)"
say "kernel package: $pkg"

mkdir -p "$cache"
work=$(mktemp -d "$cache/dl.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt drops privileges to _apt for downloads: let it write here to avoid the
# "unsandboxed" warning.
if is_root && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi

download() { (cd "$work" && apt-get download -qq "$pkg" >&2); }
if ! download; then
	apt_update_once || die "apt-get download $pkg failed and apt-get update needs root"
	download || die "apt-get download $pkg failed"
fi
deb=$(ls "$work"/*.deb)
dpkg-deb -x "$deb" "$work/x" || die "dpkg-deb -x $deb failed"

vmlinuz=$(ls "$work"/x/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "no boot/vmlinuz-* in $deb"

# Keep only boot/ (kernel, config, System.map); the modules are not needed:
# everything the tests use is built in.
dest="$cache/kernel/$pkg"
rm -rf "$dest"
mkdir -p "$dest"
mv "$work/x/boot" "$dest/boot"
ln -sfn "kernel/$pkg/boot/$(basename "$vmlinuz")" "$cache/vmlinuz.tmp"
mv -T "$cache/vmlinuz.tmp" "$cache/vmlinuz"
say "kernel ready: $cache/vmlinuz -> $(readlink "$cache/vmlinuz")"
printf '%s\n' "$cache/vmlinuz"
