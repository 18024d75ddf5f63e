// Package instrumentation holds the benchmark of what metrics and tracing
// cost the command path and the projection path of the order example
// (bench_test.go; `make bench-instrumentation`, docs/benchmarks.md). It
// has no code of its own.
package instrumentation
