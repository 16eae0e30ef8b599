package status

import (
	"fmt"
	"time"
)

// Offsite is how far behind the off-site copy of the record (the S3 bucket
// with Object Lock) is, as the running relay says.
type Offsite struct {
	Where       string    `json:"where"` // the S3 server and bucket
	LagSeconds  float64   `json:"lag_seconds"`
	Pending     int       `json:"pending_objects"`
	SyncedAt    time.Time `json:"synced_at"` // the last moment nothing waited
	LastError   string    `json:"last_error,omitempty"`
	Unreachable bool      `json:"unreachable,omitempty"` // the last error was no answer
	// TailSeconds is tail_interval: a lag up to about this is the design.
	TailSeconds float64 `json:"tail_interval_seconds"`
}

func (o *Offsite) lag() time.Duration { return time.Duration(o.LagSeconds * float64(time.Second)) }

// behind says whether the lag is past what tail_interval explains.
func (o *Offsite) behind() bool {
	return o.LagSeconds > 2*o.TailSeconds+60
}

// Text is the status line.
func (o *Offsite) Text() string {
	waiting := fmt.Sprintf("%d object(s) waiting, %s behind", o.Pending, Span(o.lag()))
	switch {
	case o.Unreachable:
		return o.Where + " does not answer: " + waiting
	case o.LastError != "":
		return o.Where + " refuses the uploads (" + o.LastError + "): " + waiting
	case o.Pending > 0:
		return fmt.Sprintf("%s, %s (the unsealed records go up every %s)", o.Where, waiting, Span(time.Duration(o.TailSeconds*float64(time.Second))))
	}
	return o.Where + ", up to date"
}

// Warning is what an admin should know, in plain words; "" when all is well.
func (o *Offsite) Warning() string {
	if !o.behind() {
		return ""
	}
	lead := fmt.Sprintf("the off-site copy of the record is %s behind", Span(o.lag()))
	tail := fmt.Sprintf(" (%d object(s) waiting; mail is still accepted and kept in the local archive, and they are uploaded once it answers)", o.Pending)
	switch {
	case o.Unreachable:
		return lead + ": the S3 server at " + o.Where + " does not answer" + tail
	case o.LastError != "":
		return lead + ": the S3 server at " + o.Where + " refuses the uploads: " + o.LastError + tail
	}
	return lead + tail
}

// Span is a duration in words: "40 seconds", "12 minutes", "2 hours 5
// minutes", "3 days 4 hours".
func Span(d time.Duration) string {
	d = d.Round(time.Second)
	unit := func(n int, one string) string {
		if n == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %ss", n, one)
	}
	switch {
	case d >= 24*time.Hour:
		return unit(int(d.Hours())/24, "day") + " " + unit(int(d.Hours())%24, "hour")
	case d >= time.Hour:
		return unit(int(d.Hours()), "hour") + " " + unit(int(d.Minutes())%60, "minute")
	case d >= time.Minute:
		return unit(int(d.Minutes()), "minute")
	}
	return unit(int(d.Seconds()), "second")
}
