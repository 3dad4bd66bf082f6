#!/usr/bin/env bash
# Installs what the SwingSet-through-vatrun test needs, idempotently:
#   - npm ci (exact versions from package-lock.json) when node_modules is missing or older than the lock
#   - npm rebuild of the native parts when they are missing: the xsnap-worker binary
#     (@agoric/xsnap builds it from C sources), better-sqlite3's addon and microtime's addon.
#     npm 11 does not run install scripts during `npm ci`, so on a fresh machine this always runs.
# Needs node (>= 20), npm, a C compiler, make and python3 (node-gyp). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"
start=$(date +%s)

missing=()
command -v node >/dev/null || missing+=("node (Node.js >= 20)")
command -v npm >/dev/null || missing+=("npm")
command -v cc >/dev/null || command -v gcc >/dev/null || missing+=("a C compiler (cc/gcc)")
command -v c++ >/dev/null || command -v g++ >/dev/null || missing+=("a C++ compiler (c++/g++, for better-sqlite3)")
command -v make >/dev/null || missing+=("make")
command -v python3 >/dev/null || missing+=("python3 (for node-gyp)")
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup.sh: missing: ${missing[*]}" >&2
	echo "setup.sh: on Debian: apt-get install -y nodejs npm build-essential python3" >&2
	exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
	echo "setup.sh: node $(node --version) is too old: Node.js >= 20 is needed" >&2
	exit 1
fi

XSNAP_WORKER=node_modules/@agoric/xsnap/xsnap-native/xsnap/build/bin/lin/release/xsnap-worker
SQLITE_ADDON=node_modules/better-sqlite3/build/Release/better_sqlite3.node

if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	echo "setup.sh: npm ci (node_modules missing or older than package-lock.json)"
	npm ci --no-audit --no-fund
fi

need=()
[ -x "$XSNAP_WORKER" ] || need+=(@agoric/xsnap)
[ -f "$SQLITE_ADDON" ] || need+=(better-sqlite3)
node -e 'require("microtime")' 2>/dev/null || need+=(microtime)
if [ ${#need[@]} -gt 0 ]; then
	echo "setup.sh: building native parts (${need[*]} missing); takes about a minute"
	npm rebuild @agoric/xsnap better-sqlite3 microtime
fi

fail=()
[ -x "$XSNAP_WORKER" ] || fail+=("$XSNAP_WORKER")
[ -f "$SQLITE_ADDON" ] || fail+=("$SQLITE_ADDON")
node -e 'require("microtime")' 2>/dev/null || fail+=("microtime's native addon")
if [ ${#fail[@]} -gt 0 ]; then
	echo "setup.sh: still missing after npm rebuild: ${fail[*]}" >&2
	exit 1
fi
echo "setup.sh: ready in $(($(date +%s) - start)) s"
