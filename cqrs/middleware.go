package cqrs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Logging returns a middleware that logs every command it sees once, after
// it was handled: at Info when it succeeded, at Error when it panicked and
// at Warn when it failed otherwise. The keys are command, command_id (when
// the command has one), correlation_id, duration, and then stream, version
// and position on success or error (and stack for a panic) on failure. A nil
// logger means [slog.Default] at the time of each command.
func Logging(logger *slog.Logger) Middleware {
	return func(next Next) Next {
		return func(ctx context.Context, cmd any) (Result, error) {
			start := time.Now()
			res, err := next(ctx, cmd)
			l := logger
			if l == nil {
				l = slog.Default()
			}
			attrs := make([]slog.Attr, 0, 7)
			attrs = append(attrs, slog.String("command", CommandName(cmd)))
			if s := scopeFrom(ctx); s != nil {
				if s.commandID != "" {
					attrs = append(attrs, slog.String("command_id", s.commandID))
				}
				attrs = append(attrs, slog.String("correlation_id", s.correlation))
			}
			attrs = append(attrs, slog.Duration("duration", time.Since(start)))
			var p *PanicError
			switch {
			case err == nil:
				attrs = append(attrs, slog.String("stream", res.Stream), slog.Int64("version", res.Version), slog.String("position", res.Position.String()))
				l.LogAttrs(ctx, slog.LevelInfo, "command handled", attrs...)
			case errors.As(err, &p):
				attrs = append(attrs, slog.Any("error", err), slog.String("stack", string(p.Stack)))
				l.LogAttrs(ctx, slog.LevelError, "command panicked", attrs...)
			default:
				attrs = append(attrs, slog.Any("error", err))
				l.LogAttrs(ctx, slog.LevelWarn, "command failed", attrs...)
			}
			return res, err
		}
	}
}

// TracingConfig tunes [Tracing]. The zero value works.
type TracingConfig struct {
	// TracerProvider makes the tracer. Defaults to the global provider,
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// tracerName is the instrumentation scope of the spans strata starts.
const tracerName = "github.com/stratadev/strata/cqrs"

// Tracing returns a middleware that starts an OpenTelemetry span for every
// command, named "handle " and the command's name, as a child of the span in
// the caller's context. Because the handler runs inside it, the span is
// what the appended events record as their trace context, so projections
// that use [ContextFromMetadata] continue the command's trace.
//
// The span has the attributes strata.command.type, strata.command.id (when
// the command has one), strata.correlation_id and, on success, strata.stream,
// strata.stream.version and strata.position; a failure is recorded on it
// with an error status.
func Tracing(cfg TracingConfig) Middleware {
	tp := cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	tracer := tp.Tracer(tracerName)
	return func(next Next) Next {
		return func(ctx context.Context, cmd any) (Result, error) {
			name := CommandName(cmd)
			attrs := make([]attribute.KeyValue, 0, 3)
			attrs = append(attrs, attribute.String("strata.command.type", name))
			if s := scopeFrom(ctx); s != nil {
				if s.commandID != "" {
					attrs = append(attrs, attribute.String("strata.command.id", s.commandID))
				}
				attrs = append(attrs, attribute.String("strata.correlation_id", s.correlation))
			}
			ctx, span := tracer.Start(ctx, "handle "+name, trace.WithAttributes(attrs...))
			defer span.End()
			res, err := next(ctx, cmd)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
				return res, err
			}
			span.SetAttributes(
				attribute.String("strata.stream", res.Stream),
				attribute.Int64("strata.stream.version", res.Version),
				attribute.String("strata.position", res.Position.String()),
			)
			return res, nil
		}
	}
}
