#!/usr/bin/env bash
# run.sh: the VM end-to-end tests (make e2e). Fetches the kernels (and qemu when
# root) on first use, then boots the VM twice and runs every test of ./vm in it:
# the main boot (root and uid-1000 runs), then the SwingSet boot (the real
# SwingSet kernel from test/swingset, read from the host over virtio-9p; needs
# `bash test/swingset/setup.sh` first). Missing pieces fail instead of skipping
# (VATRUN_E2E=1).
#
# Uses bin/vatrun and bin/vatrun-testworker (built by make) unless VATRUN_BIN /
# VATRUN_TESTWORKER point elsewhere. Extra arguments go to go test.
# Artifacts (console.log, results.log, table.txt, manifest) land in
# test/e2e/.cache/last/ unless VATRUN_E2E_OUT says otherwise.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

"$here/setup.sh" >/dev/null

export VATRUN_E2E=1
for v in VATRUN_BIN:bin/vatrun VATRUN_HOOKS_BIN:bin/vatrun-hooks VATRUN_TESTWORKER:bin/vatrun-testworker; do
	name=${v%%:*} def=$root/${v#*:}
	if [ -z "${!name:-}" ]; then
		[ -e "$def" ] || { echo "e2e: $def is missing: run make build, or set $name" >&2; exit 1; }
		export "$name=$def"
	fi
done

cd "$root"
exec go test -count=1 -v -timeout 60m "$@" ./test/e2e/...
