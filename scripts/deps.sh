#!/usr/bin/env bash
# Installs (as root) or names (otherwise) what building vatrun needs beyond Go, gcc and make.
set -euo pipefail
missing=()
[ -f /usr/include/seccomp.h ] && [ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ] || missing+=(libseccomp-dev)
command -v pkg-config >/dev/null || missing+=(pkg-config)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
	echo "vatrun needs these Debian packages: ${missing[*]}" >&2
	echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
