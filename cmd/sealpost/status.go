package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/sealpost/sealpost/archive"
	"github.com/sealpost/sealpost/internal/config"
	"github.com/sealpost/sealpost/internal/status"
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
type relayState = status.Relay

type queueState = status.Queue

func queueStateOf(list []queue.Message) queueState {
	q := queueState{Messages: len(list)}
	for _, m := range list {
		// Held mail waits from its release, not from when it came.
		since := m.Received
		if m.HeldUntil.After(since) {
			since = m.HeldUntil
		}
		if q.Oldest.IsZero() || since.Before(q.Oldest) {
			q.Oldest = since
		}
	}
	return q
}

// serveStatus answers GET /status on the control socket.
func (s *service) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.relayState())
}

// relayState is what the running relay says about itself.
func (s *service) relayState() relayState {
	st := relayState{Since: s.started, PID: os.Getpid(), Build: currentBuild(), Queue: queueStateOf(s.srv.Queue()),
		ProviderLastOK: s.srv.UpstreamLastOK(), Verified: s.bg.verified.Load(), Offsite: s.offsite.state()}
	if s.pa.arch != nil {
		st.ArchiveRecords, _ = s.pa.arch.ChainHead()
	}
	return st
}

// statusReport is `sealpost status`, also as JSON.
type statusReport = status.Report

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
	completeStatus(st, cfg, now)
	return st
}

// completeStatus adds to st what is read from files whether the relay runs
// or not (certificates, keys, the data folder's disk), then the warnings.
func completeStatus(st *statusReport, cfg *config.Config, now time.Time) {
	for _, cert := range certificatesInUse(cfg) {
		line := status.Expiry{What: cert.what, Path: cert.path}
		line.Expires, _ = tlsconf.CertificateExpiry(cert.path)
		st.Certificates = append(st.Certificates, line)
	}
	st.Keys = keyExpiries(cfg)
	st.Disk, _ = status.DiskOf(cfg.DataDir)
	st.Judge(now, verifyEvery)
}

func printStatus(w io.Writer, st *statusReport, cfg *config.Config, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\n", st.Build)
	if r := st.Relay; r != nil {
		fmt.Fprintf(tw, "relay\trunning since %s (%s, pid %d), %s\n", status.Stamp(r.Since), status.Ago(now, r.Since), r.PID, r.Build.Version)
	} else {
		fmt.Fprintf(tw, "relay\tnot running\n")
	}
	if st.Queue.Messages == 0 {
		fmt.Fprintf(tw, "queue\tempty\n")
	} else {
		fmt.Fprintf(tw, "queue\t%d message(s), the oldest waiting %s (sealpost queue list)\n", st.Queue.Messages, status.Ago(now, st.Queue.Oldest))
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
		fmt.Fprintf(tw, "provider\t%s, last reached %s (%s ago)\n", st.Provider, status.Stamp(st.Relay.ProviderLastOK), status.Ago(now, st.Relay.ProviderLastOK))
	}
	for _, l := range append(st.Certificates, st.Keys...) {
		fmt.Fprintf(tw, "%s\t%s\n", l.What, status.ExpiryText(l, now))
	}
	fmt.Fprintf(tw, "archive\t%s\n", st.VerifiedText(now))
	if r := st.Relay; r != nil && r.Offsite != nil {
		fmt.Fprintf(tw, "off-site copy\t%s\n", r.Offsite.Text())
	}
	if d := st.Disk; d != nil {
		fmt.Fprintf(tw, "disk\t%s free of %s (%s)\n", status.Bytes(d.Free), status.Bytes(d.Total), d.Path)
	}
	tw.Flush()
	for _, wline := range st.Warnings {
		fmt.Fprintf(w, "WARN %s\n", wline)
	}
}

// keyExpiries are the practice's OpenPGP key and the archive's public key,
// with when each ends.
func keyExpiries(cfg *config.Config) []status.Expiry {
	archiveKey := cfg.Archive.PublicKey
	if archiveKey == "" {
		archiveKey = filepath.Join(cfg.DataDir, "archive-public-key.asc")
	}
	var out []status.Expiry
	for _, k := range []struct{ what, path string }{{"practice key", cfg.PGP.PracticeKey}, {"archive key", archiveKey}} {
		l := status.Expiry{What: k.what, Path: k.path}
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
