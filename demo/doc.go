// Package demo holds the demo microservices that `riptrace demo` runs and
// traces: gateway (POST /checkout) calls orders (POST /orders), which calls
// payments (POST /charge). Each service is its own command in a subdirectory;
// lines worth tracing are marked with //@trace(NAME) comments, which tests and
// the demo find by name, never by number.
package demo
