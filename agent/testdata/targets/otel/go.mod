module riptrace.test/otel

go 1.26

require (
	go.opentelemetry.io/otel v1.38.0
	go.opentelemetry.io/otel/trace v1.38.0
)
