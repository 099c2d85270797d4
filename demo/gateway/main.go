// Command gateway is the entry demo service: POST /checkout validates a
// customer's basket, places the order with orders (which charges through
// payments) and answers a short summary.
//
// Usage:
//
//	gateway -orders http://HOST:PORT [-listen 127.0.0.1:0]
//
// For example:
//
//	curl -d '{"customer":"alice","items":[{"sku":"book","qty":2}]}' http://HOST:PORT/checkout
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"maps"
	"net/http"
	"os"
	"slices"

	"github.com/riptrace/riptrace/demo/internal/svc"
)

// Item is a quantity of one product.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// CheckoutRequest is a customer's basket. The same SKU may appear more than once.
type CheckoutRequest struct {
	Customer string `json:"customer"`
	Items    []Item `json:"items"`
}

// OrderRequest is what gateway sends to orders: the basket with one item per SKU.
type OrderRequest struct {
	Customer string `json:"customer"`
	Items    []Item `json:"items"`
}

// Order is the part of the orders answer that gateway reads.
type Order struct {
	ID       string  `json:"id"`
	Discount float64 `json:"discount"`
	Total    float64 `json:"total"`
	Status   string  `json:"status"`
	AuthCode string  `json:"authCode"`
	Reason   string  `json:"reason"`
}

// Summary is the checkout answer.
type Summary struct {
	OrderID  string  `json:"orderId"`
	Customer string  `json:"customer"`
	Status   string  `json:"status"`
	Approved bool    `json:"approved"`
	Units    int     `json:"units"`
	SKUs     int     `json:"skus"`
	Discount float64 `json:"discount"`
	Total    float64 `json:"total"`
	AuthCode string  `json:"authCode,omitempty"`
	Reason   string  `json:"reason,omitempty"`
}

// maxUnits bounds the units in one checkout.
const maxUnits = 1000

var ordersURL string

// checkout validates c, merges repeated SKUs and places the order.
func checkout(ctx context.Context, c *CheckoutRequest) (*Summary, error) {
	if c.Customer == "" {
		return nil, svc.Errorf(http.StatusBadRequest, "checkout: customer is required")
	}
	if len(c.Items) == 0 {
		return nil, svc.Errorf(http.StatusBadRequest, "checkout for %s: the basket is empty: add items", c.Customer)
	}
	qty := make(map[string]int, len(c.Items))
	units := 0
	for i, it := range c.Items {
		if it.SKU == "" || it.Qty <= 0 {
			return nil, svc.Errorf(http.StatusBadRequest, "checkout for %s: item %d: needs a sku and a qty above 0", c.Customer, i)
		}
		qty[it.SKU] += it.Qty
		units += it.Qty
	}
	if units > maxUnits {
		return nil, svc.Errorf(http.StatusBadRequest, "checkout for %s: %d units: at most %d per checkout", c.Customer, units, maxUnits)
	}
	items := make([]Item, 0, len(qty))
	// In SKU order: the map's own order is chosen at random on each range.
	for _, sku := range slices.Sorted(maps.Keys(qty)) {
		items = append(items, Item{SKU: sku, Qty: qty[sku]})
	}

	var o Order
	err := svc.PostJSON(ctx, ordersURL+"/orders", &OrderRequest{Customer: c.Customer, Items: items}, &o)
	approved := err == nil && o.Status == "approved"
	log.Printf("checkout %s: %d units, order %q, status %q, err %v", c.Customer, units, o.ID, o.Status, err) //@trace(checkout)
	if err != nil {
		return nil, fmt.Errorf("checkout for %s: placing order: %w", c.Customer, err)
	}
	return &Summary{
		OrderID: o.ID, Customer: c.Customer, Status: o.Status, Approved: approved,
		Units: units, SKUs: len(qty), Discount: o.Discount, Total: o.Total,
		AuthCode: o.AuthCode, Reason: o.Reason,
	}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.StringVar(&ordersURL, "orders", "", "base URL of the orders service (required)")
	flag.Parse()
	log.SetPrefix("gateway: ")
	log.SetFlags(0)
	if ordersURL == "" {
		log.Print("missing -orders URL")
		flag.Usage()
		os.Exit(2)
	}

	mux := http.NewServeMux()
	mux.Handle("/checkout", svc.Handle(checkout))
	if err := svc.Run(*listen, mux); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}
