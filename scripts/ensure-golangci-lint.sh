#!/usr/bin/env bash
# Prints the path of golangci-lint at the pinned version, building it into
# ./bin with `go install` the first time (a few minutes on 2 cores).
set -euo pipefail
version=v2.15.0
cd "$(dirname "$0")/.."
bin="$PWD/bin/golangci-lint"
if [[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -q "version ${version#v} "; then
	echo "$bin"
	exit 0
fi
echo "Building golangci-lint $version into ./bin..." >&2
GOBIN="$PWD/bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version" >&2
echo "$bin"
