package fleettest

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/riptrace/riptrace/fleet"
)

// RealisticHit is hit i of tracepoint tp on host, captured now, shaped as the eBPF
// backend's of an HTTP handler (arguments, locals, a 4-frame stack), and
// padded with a captured string to about size bytes once encoded; the
// benchmarks' simulated agents send it.
func RealisticHit(tp, host string, i, size int) fleet.Hit {
	h := fleet.Hit{
		Tracepoint: tp, Host: host, Pid: 4101,
		Process:   fleet.ProcessRef{Exe: "/usr/local/bin/orders", Module: "example.com/shop", MainPackage: "example.com/shop/cmd/orders", Revision: "3f1c2a9e8b7d6c5f4a3b2c1d0e9f8a7b6c5d4e3f"},
		Goroutine: 4711, Time: time.Now().UnixNano(),
		File: "internal/orders/handler.go", Line: 88, Function: "example.com/shop/internal/orders.(*Handler).Checkout",
		Args: []fleet.Variable{
			{Name: "h", Type: "*orders.Handler", Value: "0xc000124000"},
			{Name: "ctx", Type: "context.Context", Value: "context.Context(*context.valueCtx) 0xc0001a2b40"},
			{Name: "req", Type: "*orders.CheckoutRequest", Children: []fleet.Variable{
				{Name: "OrderID", Type: "string", Value: strconv.Quote(fmt.Sprintf("ord-20261205-%06d", i))},
				{Name: "Amount", Type: "int64", Value: "4999"},
				{Name: "Currency", Type: "string", Value: `"EUR"`},
			}},
		},
		Locals: []fleet.Variable{{Name: "total", Type: "int64", Value: strconv.Itoa(5000 + i)}, {Name: "err", Type: "error", Value: "nil"}},
	}
	for k := range 4 {
		h.Stack = append(h.Stack, fleet.Frame{Function: fmt.Sprintf("orders.step%d", k), File: "orders/handler.go", Line: 80 + k})
	}
	for len(h.Stack) > 0 && len(fleet.Encode(&h)) > size {
		h.Stack = h.Stack[:len(h.Stack)-1]
	}
	// The padding is a captured string, sized once its variable's own
	// bytes are counted.
	h.Locals = append(h.Locals, fleet.Variable{Name: "note", Type: "string", Value: `""`})
	if pad := size - len(fleet.Encode(&h)); pad > 0 {
		h.Locals[len(h.Locals)-1].Value = strconv.Quote(strings.Repeat("x", pad))
	}
	return h
}
