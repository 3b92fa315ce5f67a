package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// startTracing sets the global OpenTelemetry tracer provider, which the
// library's spans go to, from the OTEL_* environment variables, as boxo's
// tracing.NewSpanExporters reads them (the one difference: "stdout" writes
// to stderr). With no exporter it sets nothing, and spans cost next to
// nothing. shutdown flushes what is buffered.
func startTracing(ctx context.Context, stderr io.Writer) (shutdown func(), err error) {
	exporters, err := spanExporters(ctx, stderr)
	if err != nil || len(exporters) == 0 {
		return func() {}, err
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName("gobitswap")),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	for _, e := range exporters {
		opts = append(opts, sdktrace.WithBatcher(e))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(c); err != nil {
			fmt.Fprintf(stderr, "tracing: %v\n", oneLine(err.Error()))
		}
	}, nil
}

// spanExporters builds the exporters OTEL_TRACES_EXPORTER names.
func spanExporters(ctx context.Context, stderr io.Writer) ([]sdktrace.SpanExporter, error) {
	var out []sdktrace.SpanExporter
	fail := func(err error) ([]sdktrace.SpanExporter, error) {
		for _, e := range out {
			_ = e.Shutdown(ctx)
		}
		return nil, err
	}
	for name := range strings.SplitSeq(os.Getenv("OTEL_TRACES_EXPORTER"), ",") {
		var (
			e   sdktrace.SpanExporter
			err error
		)
		switch strings.TrimSpace(name) {
		case "", "none":
			continue
		case "otlp":
			protocol := "http/protobuf"
			if v := os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"); v != "" {
				protocol = v
			}
			if v := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"); v != "" {
				protocol = v
			}
			switch protocol {
			case "http/protobuf":
				e, err = otlptracehttp.New(ctx)
			case "grpc":
				e, err = otlptracegrpc.New(ctx)
			default:
				err = fmt.Errorf("unsupported OTLP protocol %q (want http/protobuf or grpc)", protocol)
			}
		case "file":
			e, err = newFileExporter(os.Getenv("OTEL_EXPORTER_FILE_PATH"))
		case "stdout":
			e, err = stdouttrace.New(stdouttrace.WithWriter(stderr), stdouttrace.WithPrettyPrint())
		default:
			err = fmt.Errorf("unknown exporter %q (want otlp, file, stdout or none)", name)
		}
		if err != nil {
			return fail(fmt.Errorf("OTEL_TRACES_EXPORTER: %w", err))
		}
		out = append(out, e)
	}
	return out, nil
}

// fileExporter writes spans as JSON to a file, appending, and closes it
// on Shutdown (boxo's "file" exporter).
type fileExporter struct {
	*stdouttrace.Exporter
	f *os.File
}

func newFileExporter(path string) (*fileExporter, error) {
	if path == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		path = filepath.Join(wd, "traces.json")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o666)
	if err != nil {
		return nil, err
	}
	e, err := stdouttrace.New(stdouttrace.WithWriter(f))
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &fileExporter{Exporter: e, f: f}, nil
}

func (e *fileExporter) Shutdown(ctx context.Context) error {
	return errors.Join(e.Exporter.Shutdown(ctx), e.f.Close())
}
