package demo_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/riptrace/riptrace/agent/agenttest"
)

func TestMain(m *testing.M) { agenttest.Main(m) }

// TestMarkers checks that each service has the lines the demo traces.
func TestMarkers(t *testing.T) {
	for file, names := range map[string][]string{
		"gateway/main.go":  {"checkout"},
		"orders/main.go":   {"price", "order"},
		"payments/main.go": {"charge"},
	} {
		for _, name := range names {
			agenttest.MarkerLine(t, filepath.FromSlash(file), name)
		}
	}
}

type summary struct {
	OrderID  string  `json:"orderId"`
	Customer string  `json:"customer"`
	Status   string  `json:"status"`
	Approved bool    `json:"approved"`
	Units    int     `json:"units"`
	SKUs     int     `json:"skus"`
	Discount float64 `json:"discount"`
	Total    float64 `json:"total"`
	AuthCode string  `json:"authCode"`
	Reason   string  `json:"reason"`
	Error    string  `json:"error"`
}

func TestCheckout(t *testing.T) {
	payments := agenttest.Start(t, agenttest.BuildTarget(t, "payments"))
	orders := agenttest.Start(t, agenttest.BuildTarget(t, "orders"), "-payments", "http://"+payments.Addr)
	gateway := agenttest.Start(t, agenttest.BuildTarget(t, "gateway"), "-orders", "http://"+orders.Addr)
	url := "http://" + gateway.Addr + "/checkout"

	for _, tc := range []struct {
		name   string
		body   string
		status int
		want   summary
		errHas string // for error answers, a part of the message
	}{{
		name:   "approved with a discount",
		body:   `{"customer":"alice","items":[{"sku":"book","qty":6},{"sku":"pen","qty":2},{"sku":"book","qty":2}]}`,
		status: http.StatusOK,
		// 8 books at 12.50 and 2 pens at 1.75 make 103.50; 10% off is 10.35.
		want: summary{OrderID: "ord-0001", Customer: "alice", Status: "approved", Approved: true,
			Units: 10, SKUs: 2, Discount: 10.35, Total: 93.15},
	}, {
		name:   "declined over the limit",
		body:   `{"customer":"bob","items":[{"sku":"laptop","qty":1}]}`,
		status: http.StatusOK,
		want: summary{OrderID: "ord-0002", Customer: "bob", Status: "declined",
			Units: 1, SKUs: 1, Discount: 89.90, Total: 809.10,
			Reason: "amount 809.10 EUR is over the limit of 500.00"},
	}, {
		name:   "declined for a blocked customer",
		body:   `{"customer":"mallory","items":[{"sku":"mug","qty":1}]}`,
		status: http.StatusOK,
		want: summary{OrderID: "ord-0003", Customer: "mallory", Status: "declined",
			Units: 1, SKUs: 1, Total: 8, Reason: "card reported stolen"},
	}, {
		name:   "unknown sku",
		body:   `{"customer":"alice","items":[{"sku":"piano","qty":1}]}`,
		status: http.StatusBadRequest,
		errHas: `unknown sku "piano": the catalog has book, lamp, laptop, mug, pen`,
	}, {
		name:   "unknown customer",
		body:   `{"customer":"zoe","items":[{"sku":"pen","qty":1}]}`,
		status: http.StatusNotFound,
		errHas: `no card on file for customer "zoe"`,
	}, {
		name:   "empty basket",
		body:   `{"customer":"alice","items":[]}`,
		status: http.StatusBadRequest,
		errHas: "the basket is empty",
	}, {
		name:   "malformed",
		body:   `{"customer":"alice","items":[{"sku":"pen","qty":"two"}]}`,
		status: http.StatusBadRequest,
		errHas: "decoding request",
	}} {
		// One after the other: the order ids are sequential.
		resp, err := http.Post(url, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: reading answer: %v", tc.name, err)
		}
		var got summary
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Errorf("%s: decoding %s: %v", tc.name, body, err)
			continue
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d; answer %s", tc.name, resp.StatusCode, tc.status, body)
		}
		if tc.errHas != "" {
			if !strings.Contains(got.Error, tc.errHas) {
				t.Errorf("%s: error %q, want it to contain %q", tc.name, got.Error, tc.errHas)
			}
			continue
		}
		if got.Approved != (got.AuthCode != "") {
			t.Errorf("%s: approved %t with auth code %q", tc.name, got.Approved, got.AuthCode)
		}
		got.AuthCode = ""
		if got != tc.want {
			t.Errorf("%s:\ngot  %+v\nwant %+v", tc.name, got, tc.want)
		}
	}

	for _, p := range []*agenttest.Proc{gateway, orders, payments} {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping %s: %v\n%s", p.Cmd.Path, err, p.Stderr())
		}
	}
}
