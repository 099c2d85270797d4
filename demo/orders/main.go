// Command orders is the middle demo service: POST /orders prices the items
// from its catalog, gives a discount on big orders, and charges the customer's
// card on file through payments.
//
// Usage:
//
//	orders -payments http://HOST:PORT [-listen 127.0.0.1:0]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/riptrace/riptrace/demo/internal/svc"
)

// Item is one line of an order request.
type Item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

// OrderRequest asks for an order.
type OrderRequest struct {
	Customer string `json:"customer"`
	Items    []Item `json:"items"`
}

// Line is a priced line of an order.
type Line struct {
	SKU       string  `json:"sku"`
	Qty       int     `json:"qty"`
	UnitPrice float64 `json:"unitPrice"`
	Total     float64 `json:"total"`
}

// Order is what orders answers: the priced order and how its charge went.
type Order struct {
	ID       string  `json:"id"`
	Customer string  `json:"customer"`
	Lines    []Line  `json:"lines"`
	Subtotal float64 `json:"subtotal"`
	Discount float64 `json:"discount"`
	Total    float64 `json:"total"`
	Status   string  `json:"status"` // "approved" or "declined"
	AuthCode string  `json:"authCode,omitempty"`
	Reason   string  `json:"reason,omitempty"`
}

// The payments wire types.
type (
	Card struct {
		Number   string `json:"number"`
		Holder   string `json:"holder"`
		ExpMonth int    `json:"expMonth"`
		ExpYear  int    `json:"expYear"`
	}
	ChargeRequest struct {
		OrderID  string  `json:"orderId"`
		Customer string  `json:"customer"`
		Amount   float64 `json:"amount"`
		Currency string  `json:"currency"`
		Card     *Card   `json:"card"`
	}
	ChargeResult struct {
		Approved bool   `json:"approved"`
		AuthCode string `json:"authCode"`
		Reason   string `json:"reason"`
	}
)

// catalog holds the unit prices in EUR.
var catalog = map[string]float64{"book": 12.50, "pen": 1.75, "mug": 8.00, "lamp": 49.90, "laptop": 899.00}

var cardsOnFile = map[string]*Card{
	"alice":   {Number: "4000000000000002", Holder: "Alice Liddell", ExpMonth: 4, ExpYear: 2031},
	"bob":     {Number: "4000000000000119", Holder: "Bob Marley", ExpMonth: 9, ExpYear: 2029},
	"mallory": {Number: "4000000000000341", Holder: "Mallory Knox", ExpMonth: 1, ExpYear: 2030},
}

const (
	bigOrder     = 100.0 // subtotal from which the discount applies
	discountRate = 0.10
)

var (
	paymentsURL string
	orderSeq    atomic.Int64
)

// priceOrder fills in the line totals, the subtotal and the discount, and
// returns the total.
func priceOrder(o *Order) float64 {
	subtotal := 0.0
	units := 0
	for i := range o.Lines {
		l := &o.Lines[i]
		l.Total = float64(l.Qty) * l.UnitPrice
		subtotal += l.Total
		units += l.Qty
	}
	discount := 0.0
	if subtotal >= bigOrder {
		discount = math.Round(subtotal*discountRate*100) / 100
	}
	total := math.Round((subtotal-discount)*100) / 100
	o.Subtotal = subtotal
	o.Discount = discount //@trace(price)
	log.Printf("price %s: %d units, subtotal %.2f, discount %.2f, total %.2f", o.ID, units, subtotal, discount, total)
	return total
}

// placeOrder prices the requested items and charges the customer's card.
func placeOrder(ctx context.Context, req *OrderRequest) (*Order, error) {
	card, ok := cardsOnFile[req.Customer]
	if !ok {
		return nil, svc.Errorf(http.StatusNotFound, "no card on file for customer %q: known customers are %s",
			req.Customer, strings.Join(slices.Sorted(maps.Keys(cardsOnFile)), ", "))
	}
	if len(req.Items) == 0 {
		return nil, svc.Errorf(http.StatusBadRequest, "order for %s has no items: add some", req.Customer)
	}
	o := &Order{Customer: req.Customer}
	for _, it := range req.Items {
		price, ok := catalog[it.SKU]
		switch {
		case !ok:
			return nil, svc.Errorf(http.StatusBadRequest, "unknown sku %q: the catalog has %s",
				it.SKU, strings.Join(slices.Sorted(maps.Keys(catalog)), ", "))
		case it.Qty <= 0:
			return nil, svc.Errorf(http.StatusBadRequest, "sku %s: qty %d: must be above 0", it.SKU, it.Qty)
		}
		o.Lines = append(o.Lines, Line{SKU: it.SKU, Qty: it.Qty, UnitPrice: price})
	}
	o.ID = fmt.Sprintf("ord-%04d", orderSeq.Add(1))
	o.Total = priceOrder(o)

	var res ChargeResult
	err := svc.PostJSON(ctx, paymentsURL+"/charge", &ChargeRequest{
		OrderID: o.ID, Customer: o.Customer, Amount: o.Total, Currency: "EUR", Card: card,
	}, &res)
	if err != nil {
		return nil, fmt.Errorf("charging order %s: %w", o.ID, err)
	}
	o.Status = "declined"
	if res.Approved {
		o.Status = "approved"
	}
	o.AuthCode, o.Reason = res.AuthCode, res.Reason //@trace(order)
	return o, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.StringVar(&paymentsURL, "payments", "", "base URL of the payments service (required)")
	flag.Parse()
	log.SetPrefix("orders: ")
	log.SetFlags(0)
	if paymentsURL == "" {
		log.Print("missing -payments URL")
		flag.Usage()
		os.Exit(2)
	}

	mux := http.NewServeMux()
	mux.Handle("/orders", svc.Handle(placeOrder))
	if err := svc.Run(*listen, mux); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}
