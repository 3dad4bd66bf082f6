#!/usr/bin/env bash
# Runs staticcheck, installing it through the Go module proxy when it is missing.
set -euo pipefail
sc=$(command -v staticcheck || true)
[ -n "$sc" ] || sc="$(go env GOPATH)/bin/staticcheck"
if [ ! -x "$sc" ]; then
	echo "installing staticcheck" >&2
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
"$sc" ./...
