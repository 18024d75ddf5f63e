#!/usr/bin/env bash
# Checks the module split:
#  1. every module's go.mod and go.sum are tidy;
#  2. an application that imports only the core (es, es/pgstore, cqrs,
#     projections, projections/pgsink) gets none of the heavy dependencies
#     of the other modules (gRPC, the EventStoreDB client, the Elasticsearch
#     client, the Kafka client franz-go, cobra) in its module graph.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
modules=$(go work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p')
if [[ -z "$modules" ]]; then
	echo "check-modules: go.work lists no module" >&2
	exit 1
fi
export GOWORK=off GOFLAGS=-mod=mod

for m in $modules; do
	if ! (cd "$m" && go mod tidy -diff >/dev/null); then
		echo "check-modules: $m: go.mod or go.sum is not tidy; run (cd $m && GOWORK=off go mod tidy)" >&2
		exit 1
	fi
done

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/go.mod" <<MOD
module example.com/consumer

go $(sed -n 's/^go //p' go.mod)

require github.com/stratadev/strata v0.0.0-00010101000000-000000000000

replace github.com/stratadev/strata => $root
MOD
cat >"$dir/main.go" <<'GO'
// Command consumer uses the core of strata and nothing else.
package main

import (
	"github.com/stratadev/strata/cqrs"
	"github.com/stratadev/strata/es"
	"github.com/stratadev/strata/es/pgstore"
	"github.com/stratadev/strata/projections"
	"github.com/stratadev/strata/projections/pgsink"
)

var (
	_ = es.NewRegistry
	_ = pgstore.New
	_ = cqrs.NewBus
	_ = projections.NewRunner
	_ = pgsink.New
)

func main() {}
GO
(cd "$dir" && go mod tidy && go build ./...)
graph=$(cd "$dir" && go mod graph)
if bad=$(grep -E 'google.golang.org/grpc|EventStore-Client-Go|go-elasticsearch|twmb/franz-go|spf13/cobra' <<<"$graph"); then
	echo "check-modules: an application of the core modules gets these in its module graph:" >&2
	echo "$bad" >&2
	exit 1
fi
echo "check-modules: $(wc -w <<<"$modules") modules tidy; $(wc -l <<<"$graph") edges in a core application's module graph, none to gRPC, EventStoreDB, Elasticsearch, Kafka or cobra"
