#!/usr/bin/env bash
# Makes sure an Elasticsearch server is unpacked for tests that start a
# throwaway one (internal/localelastic looks in the same place), and prints
# its directory. Quiet otherwise when it is there already.
#
# The server is Elastic's test distribution from Maven Central
# (org.elasticsearch.distribution.integ-test-zip:elasticsearch:VERSION:zip):
# the server and its core modules, no bundled JDK. It runs on the machine's
# Java 17. The first run downloads it with mvn into ~/.m2, later runs reuse
# it. Not needed when TEST_ELASTICSEARCH_URL names a server.
#
# Environment:
#   STRATA_ELASTIC_VERSION  the 8.x version to use (default 8.19.7)
#   STRATA_ELASTIC_DIR      where to unpack it (default /opt/strata when
#                           root, so that the user nobody can read it,
#                           else ${XDG_CACHE_HOME:-~/.cache}/strata)
#   MAVEN_REPOSITORY        mvn's local repository (default ~/.m2/repository)
set -euo pipefail

version=${STRATA_ELASTIC_VERSION:-8.19.7}
if [[ $(id -u) -eq 0 ]]; then
	base=${STRATA_ELASTIC_DIR:-/opt/strata}
else
	base=${STRATA_ELASTIC_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
fi
home=$base/elasticsearch-$version

if [[ -x $home/bin/elasticsearch ]]; then
	echo "$home"
	exit 0
fi

instruction="Elasticsearch not found: needs mvn, unzip and Java 17+ to fetch Elastic's test distribution, or set TEST_ELASTICSEARCH_URL (or STRATA_SKIP_ELASTIC=1 to skip those tests)"
for tool in mvn unzip java; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$instruction ($tool is missing)" >&2
		exit 1
	fi
done

repo=${MAVEN_REPOSITORY:-$HOME/.m2/repository}
zip=$repo/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$version/elasticsearch-$version.zip
if [[ ! -f $zip ]]; then
	echo "Downloading Elasticsearch $version (test distribution) from Maven Central..." >&2
	mvn -q -B dependency:get -Dtransitive=false -Dmaven.repo.local="$repo" \
		-Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$version:zip" >&2
fi
if [[ ! -f $zip ]]; then
	echo "$instruction (no $zip after mvn dependency:get)" >&2
	exit 1
fi

mkdir -p "$base"
tmp=$(mktemp -d "$base/.unpack.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
unzip -q "$zip" -d "$tmp"
chmod -R a+rX "$tmp"
# Another run may have unpacked it meanwhile; either copy is complete.
mv -T "$tmp/elasticsearch-$version" "$home" 2>/dev/null || true
chmod a+rx "$base"
echo "$home"
