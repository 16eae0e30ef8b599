// Package status is what `sealpost status` and the console's Today page
// both show: the relay, the queue, today's refusals, the provider,
// certificates' and keys' ends, the archive's last verification and the
// data folder's free space, and the warnings an admin should act on, in
// plain words. cmd/sealpost gathers it; this package holds its shape, its
// judgement and its wording, so the two cannot drift apart.
package status

import (
	"fmt"
	"strings"
	"time"
)

// Build is what a binary says about itself.
type Build struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// OrUnknown fills what the build did not record.
func (b Build) OrUnknown() Build {
	if b.Version == "" {
		b.Version = "devel"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

func (b Build) String() string {
	return fmt.Sprintf("sealpost %s (commit %s, %s)", b.Version, b.Commit, b.GoVersion)
}

// ArchiveCheck is one verification of the archive by the relay.
type ArchiveCheck struct {
	Time     time.Time `json:"time"`
	Seconds  float64   `json:"seconds"`
	OK       bool      `json:"ok"`
	Records  uint64    `json:"records"`
	HeadSeq  uint64    `json:"head_seq"`
	Head     string    `json:"head"`
	Problems []string  `json:"problems,omitempty"` // the first few
}

// Relay is what a running relay says about itself.
type Relay struct {
	Since          time.Time     `json:"since"`
	PID            int           `json:"pid"`
	Build          Build         `json:"build"`
	Queue          Queue         `json:"queue"`
	ProviderLastOK time.Time     `json:"provider_last_ok"` // zero: not since the start
	ArchiveRecords uint64        `json:"archive_records"`
	Verified       *ArchiveCheck `json:"verified,omitempty"`
	Offsite        *Offsite      `json:"offsite,omitempty"` // nil: no [archive.s3]
}

// Queue is the queue's length and its oldest message.
type Queue struct {
	Messages int       `json:"messages"`
	Oldest   time.Time `json:"oldest"` // zero when empty
}

// Report is everything status shows, also as JSON (`sealpost status --json`).
type Report struct {
	Build         Build         `json:"build"`
	Config        string        `json:"config"`
	Relay         *Relay        `json:"relay"` // nil: not running
	Queue         Queue         `json:"queue"`
	RefusalsToday *int          `json:"refusals_today"` // nil: unknown
	Provider      string        `json:"provider"`
	Certificates  []Expiry      `json:"certificates"`
	Keys          []Expiry      `json:"keys"`
	Verified      *ArchiveCheck `json:"archive_verified"` // nil: never
	Disk          *Disk         `json:"data_dir_disk,omitempty"`
	Warnings      []string      `json:"warnings"`
}

// Expiry is a certificate or key and when it ends (zero: never).
type Expiry struct {
	What    string    `json:"what"`
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
	Detail  string    `json:"detail,omitempty"`
}

// ProviderQuiet is how long the provider may go unreached before it is a
// warning (the same as /readyz).
const ProviderQuiet = 10 * time.Minute

// Judge adds the warnings an admin should act on; verifyEvery is how often
// the relay verifies the archive.
func (st *Report) Judge(now time.Time, verifyEvery time.Duration) {
	warn := func(format string, args ...any) { st.Warnings = append(st.Warnings, fmt.Sprintf(format, args...)) }
	if st.Queue.Messages > 0 && now.Sub(st.Queue.Oldest) > time.Hour {
		warn("a message has waited in the queue for %s (sealpost queue list)", Ago(now, st.Queue.Oldest))
	}
	if st.Relay != nil && st.Provider != "outbox" && now.Sub(st.Relay.ProviderLastOK) > ProviderQuiet {
		warn("the provider was not reached in the last 10 minutes (sealpost queue list says why)")
	}
	for _, l := range append(st.Certificates, st.Keys...) {
		switch {
		case l.Expires.IsZero() && l.Detail != "":
			warn("%s %s: %s", l.What, l.Path, l.Detail)
		case !l.Expires.IsZero() && l.Expires.Sub(now) < 30*24*time.Hour:
			warn("%s %s ends on %s", l.What, l.Path, l.Expires.Format(time.DateOnly))
		}
		if l.What == "next local CA" {
			warn("a new local CA waits to take over: give %s to every therapist's mail client now", l.Path)
		}
	}
	switch v := st.Verified; {
	case v == nil:
		warn("the relay has not verified the archive yet (it does at every start and once a day)")
	case !v.OK:
		warn("THE ARCHIVE FAILED VERIFICATION on %s: %s", v.Time.Local().Format(time.DateTime), strings.Join(v.Problems, "; "))
	case now.Sub(v.Time) > 2*verifyEvery:
		warn("the archive was last verified %s ago", Ago(now, v.Time))
	}
	if r := st.Relay; r != nil && r.Offsite != nil && r.Offsite.Warning() != "" {
		warn("%s", r.Offsite.Warning())
	}
	if d := st.Disk; d != nil && d.Low() {
		warn("the disk of data_dir %s has %s free of %s: the relay refuses mail (451) when it cannot write the spool or the archive", d.Path, Bytes(d.Free), Bytes(d.Total))
	}
}

// Stamp is a time as the status shows it, to the minute in local time.
func Stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04") }

// Ago is a duration as a person reads it: "3d 4h", "2h 5m", "40s".
func Ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return d.String()
}

// ExpiryText says when a certificate or key ends.
func ExpiryText(l Expiry, now time.Time) string {
	switch {
	case l.Path == "":
		return "none"
	case l.Expires.IsZero() && l.Detail != "":
		return l.Path + ": " + l.Detail
	case l.Expires.IsZero():
		return l.Path + ", no expiry"
	}
	return fmt.Sprintf("%s, until %s (%d days)", l.Path, l.Expires.Local().Format(time.DateOnly), int(l.Expires.Sub(now).Hours()/24))
}

// VerifiedText says what the relay's last verification of the archive found.
func (st *Report) VerifiedText(now time.Time) string {
	records := ""
	if st.Relay != nil {
		records = fmt.Sprintf("%d records; ", st.Relay.ArchiveRecords)
	}
	v := st.Verified
	if v == nil {
		return records + "verified: never (the relay verifies it at every start and once a day)"
	}
	result := "all well"
	if !v.OK {
		result = fmt.Sprintf("%d problem(s): %s", len(v.Problems), strings.Join(v.Problems, "; "))
	}
	return fmt.Sprintf("%sverified by the relay %s (%s ago): %d records up to #%d %.12s, %s", records, Stamp(v.Time), Ago(now, v.Time),
		v.Records, v.HeadSeq, v.Head, result)
}
