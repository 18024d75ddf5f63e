# Tests and benchmarks run against real servers: `make test` installs the
# PostgreSQL server binaries if needed (scripts/ensure-postgres.sh) and
# starts one throwaway server for all packages (cmd/withpg). Set
# TEST_DATABASE_URL to use a server of your own instead. Likewise for
# Elasticsearch: scripts/ensure-elasticsearch.sh fetches Elastic's test
# distribution once (mvn, Java 17) and internal/cmd/withelastic starts one
# node for the run; set TEST_ELASTICSEARCH_URL to use your own, or
# STRATA_SKIP_ELASTIC=1 to skip the Elasticsearch tests. And for Kafka:
# scripts/ensure-kafka.sh fetches Apache Kafka's jars once (mvn, Java 17)
# and internal/cmd/withkafka starts one broker for the run; set
# TEST_KAFKA_URL to use your own, or STRATA_SKIP_KAFKA=1 to skip the Kafka
# tests. And for Zipkin: scripts/ensure-zipkin.sh fetches Zipkin's server
# jar once (mvn, Java 17) and internal/cmd/withzipkin starts one server for
# the run in the background (about 5 s, while the others start, so it goes
# first); set TEST_ZIPKIN_URL to use
# your own, or STRATA_SKIP_ZIPKIN=1 to skip the tests that read traces back.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

GO ?= go
# The repository is several Go modules (go.work lists them): the core (es,
# cqrs, projections, pgstore, pgsink), and modules of their own for the
# EventStoreDB store, the Elasticsearch sink, the Kafka sink, the CLI and
# the examples, so that an application using the core does not get their
# dependencies; the comparison with another event-sourcing library
# (internal/peerbench) is one too. A `./...` stops at a module's edge, so
# the targets name every module.
MODULES := . ./cmd/strata ./es/esdbstore ./examples ./internal/peerbench ./projections/elasticsink ./projections/kafkasink
PKGS := $(addsuffix /...,$(MODULES))
WITHPG = $(GO) run ./cmd/withpg --
WITHELASTIC = $(GO) run ./internal/cmd/withelastic --
WITHKAFKA = $(GO) run ./internal/cmd/withkafka --
WITHZIPKIN = $(GO) run ./internal/cmd/withzipkin --

# Benchmarks: which ones, how long, how often (the table shows medians).
BENCH ?= .
BENCHTIME ?= 1s
BENCHCOUNT ?= 3
# go test's default of 10m is too short for the peer comparison's imports.
BENCHTIMEOUT ?= 60m
BENCH_PKGS ?= ./es/pgstore/ ./cqrs/ ./projections/pgsink/ $(PEER_BENCH_PKGS)
# The comparison with a plain table and with hallgren/eventsourcing, on a
# fast and a durable server (docs/benchmarks.md); `make bench-peer` runs it
# alone. BENCH_IMPORT_EVENTS sets the size of its import (default 100000).
PEER_BENCH_PKGS := ./internal/peerbench/
# Minimum strata/raw throughput ratios that benchratio marks (figures, not
# assertions; see docs/benchmarks.md).
BENCH_TARGETS ?= -target AppendOne=0.8,AppendOneParallel=0.8,Append100=0.8,Import=0.85,ReadAll=0.7,OnNew=0.9,OnExisting=0.9,CatchUp=0.75

.PHONY: all test vet lint tidy ensure-postgres ensure-elasticsearch ensure-kafka ensure-zipkin bench bench-peer bench-kafka bench-process bench-instrumentation

all: test

ensure-postgres:
	@./scripts/ensure-postgres.sh

ensure-elasticsearch:
	@if [[ -z "$${TEST_ELASTICSEARCH_URL:-}" && "$${STRATA_SKIP_ELASTIC:-}" != 1 ]]; then ./scripts/ensure-elasticsearch.sh >/dev/null; fi

ensure-kafka:
	@if [[ -z "$${TEST_KAFKA_URL:-}" && "$${STRATA_SKIP_KAFKA:-}" != 1 ]]; then ./scripts/ensure-kafka.sh >/dev/null; fi

ensure-zipkin:
	@if [[ -z "$${TEST_ZIPKIN_URL:-}" && "$${STRATA_SKIP_ZIPKIN:-}" != 1 ]]; then ./scripts/ensure-zipkin.sh >/dev/null; fi

vet:
	$(GO) vet $(PKGS)

# golangci-lint at the version scripts/ensure-golangci-lint.sh pins, with
# .golangci.yml; the darwin pass keeps contributors on macOS building.
lint:
	@lint=$$(./scripts/ensure-golangci-lint.sh) && for m in $(MODULES); do (cd $$m && $$lint run ./...) || exit 1; done
	GOOS=darwin $(GO) vet $(PKGS)
	./scripts/check-modules.sh

test: ensure-postgres ensure-elasticsearch ensure-kafka ensure-zipkin vet
	$(WITHZIPKIN) $(WITHPG) $(WITHELASTIC) $(WITHKAFKA) $(GO) test -race -count=1 $(PKGS)

bench: ensure-postgres
	$(WITHPG) $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -timeout $(BENCHTIMEOUT) $(BENCH_PKGS) \
		| $(GO) run ./internal/cmd/benchratio $(BENCH_TARGETS)

bench-peer: ensure-postgres
	$(WITHPG) $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -timeout $(BENCHTIMEOUT) $(PEER_BENCH_PKGS) \
		| $(GO) run ./internal/cmd/benchratio

# Process managers (docs/benchmarks.md): the order process through the
# runner against raw pgx, fsync off and on, one op per process; then the
# delay of 10,000 deadlines and the heap with up to 100,000 instances. Each
# benchmark starts servers of its own, so not part of `make bench`.
# BENCH_PROCESSES sets how many processes the first runs (default 2000).
BENCH_PROCESSES ?= 2000
bench-process: ensure-postgres
	$(GO) test -run '^$$' -bench OrderProcess -benchtime $(BENCH_PROCESSES)x -count $(BENCHCOUNT) -timeout $(BENCHTIMEOUT) ./cqrs/process/pgprocess/ \
		| $(GO) run ./internal/cmd/benchratio -target OrderProcess=0.6
	$(GO) test -run '^$$' -bench 'DeadlineDelay|IdleInstances' -benchtime 1x -count $(BENCHCOUNT) -timeout $(BENCHTIMEOUT) ./cqrs/process/pgprocess/

# The Kafka sink against raw franz-go producers, then the end-to-end
# latency at 1,000 events/s and a read model consumed by 1, 2 and 4
# processes (docs/benchmarks.md): a broker of its own, so not part of
# `make bench`. STRATA_BENCH_EVENTS sets the size of the log (default
# 100000) and of the scale-out's topic (default 20000);
# STRATA_BENCH_SECONDS how long the latency benchmark appends (default 10).
bench-kafka: ensure-postgres ensure-kafka
	$(WITHPG) $(WITHKAFKA) $(GO) test -run '^$$' -bench Publish -benchtime 1x -count $(BENCHCOUNT) -timeout $(BENCHTIMEOUT) ./projections/kafkasink/
	$(WITHPG) $(WITHKAFKA) $(GO) test -run '^$$' -bench 'EndToEndLatency|ScaleOut' -benchtime 1x -count $(BENCHCOUNT) -timeout $(BENCHTIMEOUT) ./projections/kafkasink/ ./projections/kafkasink/consume/

# What metrics and tracing cost the command and the projection path: off,
# metrics, metrics + tracing at 1% and at 100%, by turns in one run
# (docs/benchmarks.md, "Instrumentation").
bench-instrumentation: ensure-postgres
	$(WITHPG) $(GO) test -run '^$$' -bench . -benchtime 100x -count $(BENCHCOUNT) -timeout $(BENCHTIMEOUT) ./examples/instrumentation/

# The order example: throwaway PostgreSQL (and Elasticsearch and Kafka when
# Java is there; otherwise search, or publishing and the shipping service,
# are off and the demo says how to turn them on; and Zipkin, to which both
# services export their spans, the demo printing the links of two traces),
# the order service's APIs
# and projections in one process, the shipping service (examples/shipping)
# in a second one, a scripted scenario, then serving until Ctrl-C
# (DEMO_EXIT=1 stops after the scenario).
demo: ensure-postgres
	@./scripts/ensure-elasticsearch.sh >/dev/null || echo "demo: continuing without Elasticsearch; search will be off"
	@./scripts/ensure-kafka.sh >/dev/null || echo "demo: continuing without Kafka; publishing and the shipping service will be off"
	@./scripts/ensure-zipkin.sh >/dev/null || echo "demo: continuing without Zipkin; tracing will be off"
	$(GO) build -o bin/shipping ./examples/shipping/cmd/shipping
	$(GO) run ./examples/orders/cmd/orders demo --shipping bin/shipping
