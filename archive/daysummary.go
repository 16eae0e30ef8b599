package archive

import (
	"context"
	"fmt"
	"time"
)

// Summary counts what the record holds since a time, from the clear
// headers: the console's Today page.
type Summary struct {
	Sent      int `json:"sent"`      // messages the relay accepted from therapists
	Received  int `json:"received"`  // clients' messages read from mailboxes
	Delivered int `json:"delivered"` // delivery records (a copy the provider took, per attempt's recipients)
	Bounced   int `json:"bounced"`
	Refused   int `json:"refused"` // refusal records
}

// SummarySince counts the records since a time.
func SummarySince(ctx context.Context, dir string, since time.Time) (Summary, error) {
	found, err := findRecords(ctx, dir, recordQuery{kinds: []string{kindMessage, kindEvent, kindRefusal}, since: since})
	if err != nil {
		return Summary{}, fmt.Errorf("archive: %w", err)
	}
	var s Summary
	for _, l := range found {
		switch {
		case l.h.Kind == kindMessage && l.h.Dir == string(Inbound):
			s.Received++
		case l.h.Kind == kindMessage:
			s.Sent++
		case l.h.Kind == kindEvent && l.h.Event == string(Delivered):
			s.Delivered++
		case l.h.Kind == kindEvent && l.h.Event == string(Bounced):
			s.Bounced++
		case l.h.Kind == kindRefusal:
			s.Refused++
		}
	}
	return s, nil
}
