// Command secrets is a target for the redaction tests: it calls handle
// forever with a config, a request header and locals that hold a secret of
// every kind the agent must keep on the host (an API key, a password, a JSON
// web token, a bearer credential, an X-Api-Key header, a token inside a
// longer string), so a test can look for each in what leaves.
//
// It prints "READY pid=<pid>" once running and "ALIVE n=<iterations>" every
// second.
package main

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Config holds a service's settings, two of them secret.
type Config struct {
	Host     string
	Port     int
	APIKey   string
	Password string
}

// The secrets; the tests list the same strings.
const (
	apiKeyValue   = "sk-live-4f9a2c7e1b8d"
	passwordValue = "hunter2"
	jwtValue      = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnLWFsaWNlLTc3"
	bearerValue   = "Bearer bt-9c1d2e3f4a5b6c7d"
	xAPIKeyValue  = "xk-7e6d5c4b3a29"
	sessionJWT    = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnLWJvYi04OA"
)

var iterations atomic.Int64

// handle is never inlined so that its arguments stay arguments.
//
//go:noinline
func handle(cfg *Config, hdr http.Header, n int) int {
	password := cfg.Password
	jwt := jwtValue
	bearer := bearerValue
	note := "session=" + sessionJWT + "; path=/"
	// Short enough for the default 64 bytes a string shows.
	raw := "GET / HTTP/1.1\r\nAuthorization: " + bearerValue + "\r\n"
	host := cfg.Host
	sessions := map[string]string{sessionJWT: "bob"}
	sum := len(password) + len(jwt) + len(bearer) + len(note) + len(raw) + len(host) + len(hdr) + len(sessions) //@trace(handle)
	return sum + n
}

func main() {
	fmt.Printf("READY pid=%d\n", os.Getpid())
	cfg := &Config{Host: "db.internal", Port: 5432, APIKey: apiKeyValue, Password: passwordValue}
	hdr := http.Header{
		"Accept":        {"*/*"},
		"X-Api-Key":     {xAPIKeyValue},
		"Authorization": {bearerValue},
		"X-Session":     {"session=" + sessionJWT},
	}
	last := time.Now()
	total := 0
	for n := 0; ; n++ {
		total += handle(cfg, hdr, n)
		iterations.Add(1)
		if time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Printf("ALIVE n=%d\n", iterations.Load())
		}
		if strings.HasPrefix(cfg.Host, "x") {
			fmt.Println(total)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
