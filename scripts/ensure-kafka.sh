#!/usr/bin/env bash
# Makes sure an Apache Kafka broker is there for tests that start a
# throwaway one (internal/localkafka looks in the same place), and prints
# its directory. Quiet otherwise when it is there already.
#
# The broker is Kafka's own jars from Maven Central
# (org.apache.kafka:kafka_2.13:VERSION with its runtime dependencies, plus
# log4j-slf4j-impl so that the broker's slf4j logging reaches log4j 2),
# copied into VERSION's libs directory: no scripts, no bundled JDK. It runs
# on the machine's Java 17 as `java -cp 'libs/*' kafka.Kafka`. The first
# run downloads about 43 MB (about 15 s here) with mvn into ~/.m2, later runs reuse it. Not
# needed when TEST_KAFKA_URL names a broker.
#
# Environment:
#   STRATA_KAFKA_VERSION  the 4.x version to use (default 4.1.1)
#   STRATA_KAFKA_DIR      where to put it (default /opt/strata when root,
#                         else ${XDG_CACHE_HOME:-~/.cache}/strata)
#   MAVEN_REPOSITORY      mvn's local repository (default ~/.m2/repository)
set -euo pipefail

version=${STRATA_KAFKA_VERSION:-4.1.1}
# The slf4j binding: Kafka 4.1 logs through slf4j 1.7 and ships log4j 2.
log4j=2.24.3
if [[ $(id -u) -eq 0 ]]; then
	base=${STRATA_KAFKA_DIR:-/opt/strata}
else
	base=${STRATA_KAFKA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/strata}
fi
home=$base/kafka-$version

if [[ -f $home/libs/kafka_2.13-$version.jar ]]; then
	echo "$home"
	exit 0
fi

instruction="Kafka not found: needs mvn and Java 17+ to fetch Apache Kafka's jars, or set TEST_KAFKA_URL (or STRATA_SKIP_KAFKA=1 to skip those tests)"
for tool in mvn java; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "$instruction ($tool is missing)" >&2
		exit 1
	fi
done

repo=${MAVEN_REPOSITORY:-$HOME/.m2/repository}
mkdir -p "$base"
tmp=$(mktemp -d "$base/.fetch.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# A pom of our own whose dependencies are the broker and the binding;
# copy-dependencies puts their runtime closure in one directory.
cat >"$tmp/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.strata</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>$version</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$version</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$log4j</version>
    </dependency>
  </dependencies>
</project>
POM
echo "Downloading Apache Kafka $version from Maven Central..." >&2
mkdir -p "$tmp/kafka-$version/libs"
if ! (cd "$tmp" && mvn -q -B dependency:copy-dependencies -Dmaven.repo.local="$repo" \
	-DincludeScope=runtime -DoutputDirectory="$tmp/kafka-$version/libs") >&2; then
	echo "$instruction (mvn dependency:copy-dependencies failed)" >&2
	exit 1
fi
if [[ ! -f $tmp/kafka-$version/libs/kafka_2.13-$version.jar ]]; then
	echo "$instruction (no kafka_2.13-$version.jar after mvn dependency:copy-dependencies)" >&2
	exit 1
fi
chmod -R a+rX "$tmp/kafka-$version"
# Another run may have fetched it meanwhile; either copy is complete.
mv -T "$tmp/kafka-$version" "$home" 2>/dev/null || true
chmod a+rx "$base"
echo "$home"
