package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/tlsconf"
	"github.com/sealpost/sealpost/relay/queue"
	"github.com/sealpost/sealpost/rules/pgp"
)

func init() {
	register(&command{name: "status", args: "[--json]",
		summary: "one screen: the relay, the queue, today's refusals, the provider, certificates and keys, the archive's last verification",
		run:     runStatus})
}

// relayState is what a running relay tells `sealpost status` on the
// control socket.
type relayState struct {
	Since          time.Time     `json:"since"`
	PID            int           `json:"pid"`
	Build          buildInfo     `json:"build"`
	Queue          queueState    `json:"queue"`
	ProviderLastOK time.Time     `json:"provider_last_ok"` // zero: not since the start
	ArchiveRecords uint64        `json:"archive_records"`
	Verified       *archiveCheck `json:"verified,omitempty"`
}

type queueState struct {
	Messages int       `json:"messages"`
	Oldest   time.Time `json:"oldest"` // zero when empty
}

func queueStateOf(list []queue.Message) queueState {
	q := queueState{Messages: len(list)}
	for _, m := range list {
		if q.Oldest.IsZero() || m.Received.Before(q.Oldest) {
			q.Oldest = m.Received
		}
	}
	return q
}

// serveStatus answers GET /status on the control socket.
func (s *service) serveStatus(w http.ResponseWriter, r *http.Request) {
	st := relayState{Since: s.started, PID: os.Getpid(), Build: currentBuild(), Queue: queueStateOf(s.srv.Queue()),
		ProviderLastOK: s.srv.UpstreamLastOK(), Verified: s.bg.verified.Load()}
	if s.pa.arch != nil {
		st.ArchiveRecords, _ = s.pa.arch.ChainHead()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

// statusReport is `sealpost status`, also as JSON.
type statusReport struct {
	Build         buildInfo     `json:"build"`
	Config        string        `json:"config"`
	Relay         *relayState   `json:"relay"` // nil: not running
	Queue         queueState    `json:"queue"`
	RefusalsToday *int          `json:"refusals_today"` // nil: unknown
	Provider      string        `json:"provider"`
	Certificates  []expiryLine  `json:"certificates"`
	Keys          []expiryLine  `json:"keys"`
	Verified      *archiveCheck `json:"archive_verified"` // nil: never
	Warnings      []string      `json:"warnings"`
}

// expiryLine is a certificate or key and when it ends (zero: never).
type expiryLine struct {
	What    string    `json:"what"`
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
	Detail  string    `json:"detail,omitempty"`
}

func runStatus(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	asJSON := fs.Bool("json", false, "machine-readable output")
	_, cfg, err := c.start(fs, args, noArgs)
	if err != nil {
		return err
	}
	st := gatherStatus(cfg, time.Now())
	if *asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(c.stdout, st, cfg, time.Now())
	return nil
}

func gatherStatus(cfg *config.Config, now time.Time) *statusReport {
	st := &statusReport{Build: currentBuild(), Config: cfg.Path, Provider: cfg.Upstream.Address, Warnings: []string{}}
	warn := func(format string, args ...any) { st.Warnings = append(st.Warnings, fmt.Sprintf(format, args...)) }
	if ctl, err := queue.DialControl(cfg.ControlPath()); err == nil {
		var rs relayState
		if err := ctl.Call("GET", "/status", &rs); err == nil {
			st.Relay, st.Queue, st.Verified = &rs, rs.Queue, rs.Verified
		} else {
			warn("the relay's control socket did not answer: %v", err)
		}
	}
	if st.Relay == nil {
		warn("the relay is not running (systemctl start sealpost)")
		if oq, err := queue.OpenOffline(cfg.SpoolDir()); err == nil {
			st.Queue = queueStateOf(oq.List())
			oq.Close()
		} else {
			warn("the queue cannot be read: %v", err)
		}
		st.Verified, _ = readArchiveCheck(cfg.DataDir)
	}
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	if refused, err := archive.FindRefusals(cfg.ArchiveDir(), "", midnight); err == nil {
		n := len(refused)
		st.RefusalsToday = &n
	}
	for _, cert := range certificatesInUse(cfg) {
		line := expiryLine{What: cert.what, Path: cert.path}
		line.Expires, _ = tlsconf.CertificateExpiry(cert.path)
		st.Certificates = append(st.Certificates, line)
	}
	st.Keys = keyExpiries(cfg)
	judge(st, now, warn)
	return st
}

// judge adds the warnings an admin should act on.
func judge(st *statusReport, now time.Time, warn func(string, ...any)) {
	if st.Queue.Messages > 0 && now.Sub(st.Queue.Oldest) > time.Hour {
		warn("a message has waited in the queue for %s (sealpost queue list)", ago(now, st.Queue.Oldest))
	}
	if st.Relay != nil && st.Provider != "outbox" && now.Sub(st.Relay.ProviderLastOK) > 10*time.Minute {
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
		warn("the archive was last verified %s ago", ago(now, v.Time))
	}
}

func printStatus(w io.Writer, st *statusReport, cfg *config.Config, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\n", st.Build)
	if r := st.Relay; r != nil {
		fmt.Fprintf(tw, "relay\trunning since %s (%s, pid %d), %s\n", stamp(r.Since), ago(now, r.Since), r.PID, r.Build.Version)
	} else {
		fmt.Fprintf(tw, "relay\tnot running\n")
	}
	if st.Queue.Messages == 0 {
		fmt.Fprintf(tw, "queue\tempty\n")
	} else {
		fmt.Fprintf(tw, "queue\t%d message(s), the oldest waiting %s (sealpost queue list)\n", st.Queue.Messages, ago(now, st.Queue.Oldest))
	}
	if st.RefusalsToday != nil {
		fmt.Fprintf(tw, "refusals\t%d today (sealpost refusals list)\n", *st.RefusalsToday)
	} else {
		fmt.Fprintf(tw, "refusals\tunknown: no archive in %s\n", cfg.ArchiveDir())
	}
	switch {
	case st.Provider == "outbox":
		fmt.Fprintf(tw, "provider\tnone: delivery into the outbox %s\n", cfg.OutboxDir())
	case st.Relay == nil:
		fmt.Fprintf(tw, "provider\t%s, not known while the relay is stopped\n", st.Provider)
	case st.Relay.ProviderLastOK.IsZero():
		fmt.Fprintf(tw, "provider\t%s, not reached since the start\n", st.Provider)
	default:
		fmt.Fprintf(tw, "provider\t%s, last reached %s (%s ago)\n", st.Provider, stamp(st.Relay.ProviderLastOK), ago(now, st.Relay.ProviderLastOK))
	}
	for _, l := range append(st.Certificates, st.Keys...) {
		fmt.Fprintf(tw, "%s\t%s\n", l.What, expiryText(l, now))
	}
	fmt.Fprintf(tw, "archive\t%s\n", verifiedText(st, now))
	tw.Flush()
	for _, wline := range st.Warnings {
		fmt.Fprintf(w, "WARN %s\n", wline)
	}
}

func expiryText(l expiryLine, now time.Time) string {
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

func verifiedText(st *statusReport, now time.Time) string {
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
	return fmt.Sprintf("%sverified by the relay %s (%s ago): %d records up to #%d %.12s, %s", records, stamp(v.Time), ago(now, v.Time),
		v.Records, v.HeadSeq, v.Head, result)
}

func stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04") }

// ago is a duration as a person reads it: "3d 4h", "2h 5m", "40s".
func ago(now, t time.Time) string {
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

// keyExpiries are the practice's OpenPGP key and the archive's public key,
// with when each ends.
func keyExpiries(cfg *config.Config) []expiryLine {
	archiveKey := cfg.Archive.PublicKey
	if archiveKey == "" {
		archiveKey = filepath.Join(cfg.DataDir, "archive-public-key.asc")
	}
	var out []expiryLine
	for _, k := range []struct{ what, path string }{{"practice key", cfg.PGP.PracticeKey}, {"archive key", archiveKey}} {
		l := expiryLine{What: k.what, Path: k.path}
		if k.path != "" {
			e, err := readFirstKey(k.path)
			if err != nil {
				l.Detail = err.Error()
			} else {
				l.Expires = keyExpiry(e)
				l.Path += " (" + pgp.Fingerprint(e) + ")"
			}
		}
		out = append(out, l)
	}
	return out
}

// keyExpiry is when a key's primary key ends by its primary identity's
// self-signature; zero when it does not.
func keyExpiry(e *openpgp.Entity) time.Time {
	id := e.PrimaryIdentity()
	if id == nil || id.SelfSignature == nil || id.SelfSignature.KeyLifetimeSecs == nil || *id.SelfSignature.KeyLifetimeSecs == 0 {
		return time.Time{}
	}
	return e.PrimaryKey.CreationTime.Add(time.Duration(*id.SelfSignature.KeyLifetimeSecs) * time.Second)
}

func readFirstKey(path string) (*openpgp.Entity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	list, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil || len(list) == 0 {
		return nil, fmt.Errorf("no OpenPGP key in it: %v", err)
	}
	return list[0], nil
}
