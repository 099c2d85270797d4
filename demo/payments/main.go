// Command payments is the last demo service: POST /charge approves or declines
// a charge for an order. It declines amounts over the limit and customers on
// the blocklist.
//
// Usage:
//
//	payments [-listen 127.0.0.1:0]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math"
	"net/http"
	"os"
	"sync/atomic"

	"github.com/riptrace/riptrace/demo/internal/svc"
)

// Card is the card to charge.
type Card struct {
	Number   string `json:"number"`
	Holder   string `json:"holder"`
	ExpMonth int    `json:"expMonth"`
	ExpYear  int    `json:"expYear"`
}

// ChargeRequest asks to charge Amount for an order.
type ChargeRequest struct {
	OrderID  string  `json:"orderId"`
	Customer string  `json:"customer"`
	Amount   float64 `json:"amount"`
	Currency string  `json:"currency"`
	Card     *Card   `json:"card"`
}

// ChargeResult says whether the charge went through, and why not.
type ChargeResult struct {
	Approved bool   `json:"approved"`
	AuthCode string `json:"authCode"`
	Reason   string `json:"reason"`
}

// limit is the largest amount approved in one charge.
const limit = 500.0

// blocked maps customers whose charges are always declined to the reason.
var blocked = map[string]string{
	"mallory": "card reported stolen",
}

// authSeq numbers the authorization codes.
var authSeq atomic.Int64

// charge decides whether to approve req. Declines are results, not errors;
// errors are for requests that cannot be charged at all.
func charge(req *ChargeRequest) (*ChargeResult, error) {
	if req.Card == nil || len(req.Card.Number) < 4 {
		return nil, svc.Errorf(http.StatusBadRequest, "charging order %s: no card number: send a card with the charge", req.OrderID)
	}
	if req.Currency != "EUR" {
		return nil, svc.Errorf(http.StatusBadRequest, "charging order %s: currency %q not supported: use EUR", req.OrderID, req.Currency)
	}
	if req.Amount <= 0 {
		return nil, svc.Errorf(http.StatusBadRequest, "charging order %s: amount %.2f: must be above 0", req.OrderID, req.Amount) //@trace(refuse)
	}
	cents := int64(math.Round(req.Amount * 100))
	overLimit := req.Amount > limit
	masked := "**** " + req.Card.Number[len(req.Card.Number)-4:]
	reason, isBlocked := blocked[req.Customer]
	approved := !isBlocked && !overLimit
	log.Printf("charge %s: %s, card %s, %d cents, approved %t (%s)", req.OrderID, req.Customer, masked, cents, approved, reason) //@trace(charge)
	res := &ChargeResult{Approved: approved, Reason: reason}
	switch {
	case approved:
		res.AuthCode = fmt.Sprintf("A%05d", authSeq.Add(1))
	case overLimit && !isBlocked:
		res.Reason = fmt.Sprintf("amount %.2f %s is over the limit of %.2f", req.Amount, req.Currency, limit)
	}
	return res, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	log.SetPrefix("payments: ")
	log.SetFlags(0)

	mux := http.NewServeMux()
	mux.Handle("/charge", svc.Handle(func(_ context.Context, req *ChargeRequest) (*ChargeResult, error) {
		return charge(req)
	}))
	if err := svc.Run(*listen, mux); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}
