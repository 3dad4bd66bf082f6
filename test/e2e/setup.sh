#!/usr/bin/env bash
# setup.sh: make sure the VM end-to-end tests can run on this machine.
#
#  - qemu-system-x86_64 is installed (apt-get install qemu-system-x86 when root);
#  - a Debian cloud kernel is extracted once into test/e2e/.cache/ (apt-get download +
#    dpkg-deb -x, never installed into /boot), and test/e2e/.cache/vmlinuz points at it;
#  - so is the generic Debian kernel of the same version with its virtio and 9p modules
#    (test/e2e/.cache/vmlinuz-9p, test/e2e/.cache/vmlinuz-9p.modules), for the SwingSet run.
#
# Idempotent: when everything is present it only prints the (cloud) kernel path.
# Environment: VATRUN_E2E_CACHE overrides the cache directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${VATRUN_E2E_CACHE:-$here/.cache}

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

# --- kernels ----------------------------------------------------------------
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is missing (this script needs a Debian-based host)"
command -v apt-get >/dev/null 2>&1 || die "apt-get is missing (this script needs a Debian-based host)"

# fetch_kernel METAPKG LINK [MODULE_DIR...]: extract the image package METAPKG depends on into
# $cache/kernel/<pkg>/ (boot/, plus lib/modules/<version>/kernel/<MODULE_DIR> for each MODULE_DIR)
# and point $cache/LINK at its vmlinuz (and $cache/LINK.modules at lib/modules/<version> when
# modules were asked for). Nothing is installed into /boot or /lib/modules.
fetch_kernel() {
	local metapkg=$1 link=$2
	shift 2
	if [ -e "$cache/$link" ] && { [ $# -eq 0 ] || [ -d "$cache/$link.modules" ]; }; then
		say "kernel cached: $(readlink "$cache/$link")"
		return 0
	fi
	image_pkg() {
		apt-cache depends "$metapkg" 2>/dev/null |
			sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
	}
	local pkg
	pkg=$(image_pkg || true)
	if [ -z "$pkg" ]; then
		apt_update_once || die "apt-cache does not know $metapkg and apt-get update needs root"
		pkg=$(image_pkg || true)
	fi
	[ -n "$pkg" ] || die "could not find the image package $metapkg depends on (apt-cache depends $metapkg)"
	say "kernel package: $pkg"

	mkdir -p "$cache"
	local work
	work=$(mktemp -d "$cache/dl.XXXXXX")
	# apt drops privileges to _apt for downloads: let it write here to avoid the
	# "unsandboxed" warning.
	if is_root && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi

	download() { (cd "$work" && apt-get download -qq "$pkg" >&2); }
	if ! download; then
		apt_update_once || { rm -rf "$work"; die "apt-get download $pkg failed and apt-get update needs root"; }
		download || { rm -rf "$work"; die "apt-get download $pkg failed"; }
	fi
	local deb vmlinuz
	deb=$(ls "$work"/*.deb)
	dpkg-deb -x "$deb" "$work/x" || { rm -rf "$work"; die "dpkg-deb -x $deb failed"; }

	vmlinuz=$(ls "$work"/x/boot/vmlinuz-* 2>/dev/null | head -n1)
	[ -n "$vmlinuz" ] || { rm -rf "$work"; die "no boot/vmlinuz-* in $deb"; }

	# Keep boot/ (kernel, config, System.map) and only the module directories asked for.
	local dest="$cache/kernel/$pkg" version
	version=${vmlinuz##*/vmlinuz-}
	rm -rf "$dest"
	mkdir -p "$dest"
	mv "$work/x/boot" "$dest/boot"
	if [ $# -gt 0 ]; then
		local d
		for d in "$@"; do
			[ -d "$work/x/lib/modules/$version/kernel/$d" ] || { rm -rf "$work"; die "$deb has no lib/modules/$version/kernel/$d"; }
			mkdir -p "$dest/lib/modules/$version/kernel/$(dirname "$d")"
			mv "$work/x/lib/modules/$version/kernel/$d" "$dest/lib/modules/$version/kernel/$d"
		done
		ln -sfn "kernel/$pkg/lib/modules/$version" "$cache/$link.modules.tmp"
		mv -T "$cache/$link.modules.tmp" "$cache/$link.modules"
	fi
	rm -rf "$work"
	ln -sfn "kernel/$pkg/boot/$(basename "$vmlinuz")" "$cache/$link.tmp"
	mv -T "$cache/$link.tmp" "$cache/$link"
	say "kernel ready: $cache/$link -> $(readlink "$cache/$link")"
}

# The cloud kernel boots the root and uid-1000 runs: everything they use is built in.
fetch_kernel linux-image-cloud-amd64 vmlinuz
# The generic kernel (same version) boots the SwingSet run: the cloud kernel has no 9p, and the
# VM reads the host's Node.js and node_modules over virtio-9p. Only the modules for that are kept.
fetch_kernel linux-image-amd64 vmlinuz-9p fs/9p net/9p fs/netfs fs/fscache drivers/virtio

# The generic kernel is xz-compressed: unpacking it takes the emulated CPU ~8 s before the kernel
# even starts. Its uncompressed ELF image has a PVH entry point, which qemu -kernel boots directly
# (~1 s). vmlinuz-9p then points at boot/vmlinux-<version>; when xz is missing it stays on vmlinuz.
unpack_vmlinux() {
	local link=$1 target dir vmlinuz vmlinux off
	target=$(readlink "$cache/$link")
	case $(basename "$target") in vmlinuz-*) ;; *) return 0 ;; esac
	command -v xz >/dev/null 2>&1 || { say "xz is missing: $link stays compressed (slower boot)"; return 0; }
	dir=$(dirname "$target") vmlinuz="$cache/$target"
	vmlinux="$cache/$dir/vmlinux-${vmlinuz##*/vmlinuz-}"
	off=$(LC_ALL=C grep -abo $'\xfd7zXZ' "$vmlinuz" | head -n1 | cut -d: -f1)
	[ -n "$off" ] || { say "$vmlinuz is not xz-compressed: booting it as is"; return 0; }
	if ! tail -c +$((off + 1)) "$vmlinuz" | xz -dcq >"$vmlinux.tmp" 2>/dev/null &&
		! [ -s "$vmlinux.tmp" ]; then
		rm -f "$vmlinux.tmp"
		say "could not unpack $vmlinuz: booting it as is"
		return 0
	fi
	# xz stops with "trailing garbage" after the payload: only an ELF image counts.
	if [ "$(head -c4 "$vmlinux.tmp" | od -An -c | tr -d ' ')" != '177ELF' ]; then
		rm -f "$vmlinux.tmp"
		say "unpacked $vmlinuz is not an ELF image: booting it as is"
		return 0
	fi
	mv "$vmlinux.tmp" "$vmlinux"
	ln -sfn "$dir/$(basename "$vmlinux")" "$cache/$link.tmp"
	mv -T "$cache/$link.tmp" "$cache/$link"
	say "kernel unpacked: $cache/$link -> $(readlink "$cache/$link")"
}
unpack_vmlinux vmlinuz-9p
printf '%s\n' "$cache/vmlinuz"
