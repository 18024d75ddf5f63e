#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (initdb, pg_ctl, postgres) are
# installed, for tests that start a throwaway server (internal/localpg looks
# in the same places). Quiet when they are. Installs Debian's postgresql
# package when running as root with apt-get; otherwise says what to do and
# fails. Not needed when TEST_DATABASE_URL names a server.
set -euo pipefail

instruction="PostgreSQL server binaries not found: apt-get install -y postgresql, or set TEST_DATABASE_URL"

has_binaries() {
	local dir
	if command -v initdb >/dev/null 2>&1; then
		dir=$(dirname "$(command -v initdb)")
		[[ -x $dir/pg_ctl && -x $dir/postgres ]] && return 0
		dir=$(dirname "$(readlink -f "$(command -v initdb)")")
		[[ -x $dir/pg_ctl && -x $dir/postgres ]] && return 0
	fi
	for dir in /usr/lib/postgresql/*/bin; do
		[[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]] && return 0
	done
	return 1
}

if [[ -n ${TEST_DATABASE_URL:-} ]] || has_binaries; then
	exit 0
fi

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
	echo "$instruction" >&2
	exit 1
fi

echo "Installing PostgreSQL server binaries (apt-get install -y postgresql)..." >&2
export DEBIAN_FRONTEND=noninteractive
# Debian's package starts a cluster service; tests start their own servers,
# so keep it from starting (policy-rc.d) and stop it if it did anyway.
policy=/usr/sbin/policy-rc.d
created_policy=false
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	created_policy=true
fi
cleanup() { if $created_policy; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends postgresql >/dev/null

if command -v pg_lsclusters >/dev/null 2>&1; then
	{ pg_lsclusters --no-header 2>/dev/null || true; } | while read -r version name _; do
		pg_ctlcluster "$version" "$name" stop >/dev/null 2>&1 || true
	done
fi

if ! has_binaries; then
	echo "$instruction" >&2
	exit 1
fi
