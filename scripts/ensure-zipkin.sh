#!/usr/bin/env bash
# Makes sure a Zipkin server is there for the tests and the demo that
# start a throwaway one (internal/localzipkin looks in the same place), and
# prints the path of its jar. Quiet otherwise when it is there already.
#
# The server is Zipkin's own executable jar from Maven Central
# (io.zipkin:zipkin-server:VERSION:jar:exec): one file that runs on the
# machine's Java 17 as `java -jar`, with in-memory storage. The first run
# downloads about 130 MB (about 8 s here) with mvn into the local Maven
# repository; later runs reuse it. Not needed when TEST_ZIPKIN_URL names a
# server.
#
# Environment:
#   STRATA_ZIPKIN_VERSION  the 3.x version to use (default 3.5.1)
#   MAVEN_REPOSITORY       mvn's local repository (default ~/.m2/repository)
set -euo pipefail

version=${STRATA_ZIPKIN_VERSION:-3.5.1}
repo=${MAVEN_REPOSITORY:-$HOME/.m2/repository}
jar=$repo/io/zipkin/zipkin-server/$version/zipkin-server-$version-exec.jar

if [[ -f $jar ]]; then
	echo "$jar"
	exit 0
fi

instruction="Zipkin not found: needs mvn and Java 17+ to fetch Zipkin's server jar, or set TEST_ZIPKIN_URL (or STRATA_SKIP_ZIPKIN=1 to skip those tests)"
for tool in mvn java; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$instruction ($tool is missing)" >&2
		exit 1
	fi
done

echo "Downloading Zipkin server $version from Maven Central..." >&2
if ! mvn -q -B dependency:get -Dmaven.repo.local="$repo" -Dtransitive=false \
	-Dartifact="io.zipkin:zipkin-server:$version:jar:exec" >&2; then
	echo "$instruction (mvn dependency:get failed)" >&2
	exit 1
fi
if [[ ! -f $jar ]]; then
	echo "$instruction (no $jar after mvn dependency:get)" >&2
	exit 1
fi
echo "$jar"
