package testsupport

import (
	"net"
	"sync"
	"testing"
)

// Relay listens on addr ("127.0.0.1:0" for any port) and relays each
// connection it accepts to target: up copies from the client to the
// server, down from the server to the client, each returning once its
// source or destination is gone; both connections are then closed, which
// ends the other. A test shapes the link in its pumps (delays, pauses).
// The test's cleanup stops listening, closes every connection and waits for
// the pumps. Relay returns the address it listens on.
func Relay(t testing.TB, addr, target string, up, down func(dst, src net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	pump := func(copy func(dst, src net.Conn), dst, src net.Conn) {
		defer wg.Done()
		copy(dst, src)
		dst.Close()
		src.Close()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go pump(up, s, c)
			go pump(down, c, s)
		}
	}()
	return ln.Addr().String()
}
