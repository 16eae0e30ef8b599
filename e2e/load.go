package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Load is a load generator: concurrent sessions with STARTTLS and AUTH, each
// sending messages with a unique Message-ID, recording which were answered
// 250 and how long the 250 took after the end of DATA.
type Load struct {
	Addr       string
	CAFile     string
	User, Pass string
	From, To   string
	Sessions   int
	PerSession int             // messages per connection before reconnecting
	Size       func(i int) int // body size of message i
	Prefix     string          // Message-ID prefix, to tell runs apart
	Rate       float64         // messages per second over all sessions; 0: as fast as the server answers

	tokens chan struct{}

	mu        sync.Mutex
	acked     []string
	latencies []time.Duration
	errors    map[string]int
	seq       atomic.Int64
}

// Run sends until ctx ends or total messages were attempted (0: no limit).
func (l *Load) Run(ctx context.Context, total int) {
	pemBytes, err := os.ReadFile(l.CAFile)
	if err != nil {
		panic(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	conf := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if l.errors == nil {
		l.errors = map[string]int{}
	}
	if l.PerSession == 0 {
		l.PerSession = 1 << 30
	}
	if l.Rate > 0 {
		l.tokens = make(chan struct{})
		tctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			interval := time.Duration(float64(time.Second) / l.Rate)
			next := time.Now()
			for {
				next = next.Add(interval)
				time.Sleep(time.Until(next))
				select {
				case l.tokens <- struct{}{}:
				case <-tctx.Done():
					return
				}
			}
		}()
	}
	var wg sync.WaitGroup
	for s := 0; s < l.Sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if total > 0 && l.seq.Load() >= int64(total) {
					return
				}
				l.session(ctx, conf, total)
			}
		}()
	}
	wg.Wait()
}

func (l *Load) fail(what string) {
	l.mu.Lock()
	l.errors[what]++
	l.mu.Unlock()
}

func (l *Load) session(ctx context.Context, conf *tls.Config, total int) {
	c, err := smtp.DialStartTLS(l.Addr, conf)
	if err != nil {
		l.fail("connect")
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		return
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", l.User, l.Pass)); err != nil {
		l.fail("auth")
		return
	}
	for n := 0; n < l.PerSession && ctx.Err() == nil; n++ {
		if l.tokens != nil {
			select {
			case <-l.tokens:
			case <-ctx.Done():
				return
			}
		}
		i := l.seq.Add(1)
		if total > 0 && i > int64(total) {
			return
		}
		id := fmt.Sprintf("%s-%d", l.Prefix, i)
		size := 4096
		if l.Size != nil {
			size = l.Size(int(i))
		}
		if err := c.Mail(l.From, nil); err != nil {
			l.fail("mail")
			return
		}
		if err := c.Rcpt(l.To, nil); err != nil {
			l.fail("rcpt")
			return
		}
		w, err := c.Data()
		if err != nil {
			l.fail("data")
			return
		}
		fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: load %s\r\nMessage-ID: <%s@load.test>\r\n\r\n", l.From, l.To, id, id)
		writeBody(w, size)
		start := time.Now()
		if err := w.Close(); err != nil {
			l.fail("end of data: " + firstLine(err.Error()))
			return
		}
		lat := time.Since(start)
		l.mu.Lock()
		l.acked = append(l.acked, id)
		l.latencies = append(l.latencies, lat)
		l.mu.Unlock()
	}
	c.Quit()
}

var bodyLine = strings.Repeat("The quick brown fox jumps over the lazy dog. ", 1)[:44] + "0123456789abcdefghijklmnopqrstuvwxyz\r\n"

func writeBody(w io.Writer, size int) {
	for size > 0 {
		n := min(size, len(bodyLine))
		line := bodyLine[len(bodyLine)-n:]
		io.WriteString(w, line)
		size -= n
	}
	io.WriteString(w, "\r\n")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// Acked returns the ids answered 250 so far.
func (l *Load) Acked() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// Errors returns counts of failures by kind.
func (l *Load) Errors() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.errors {
		out[k] = v
	}
	return out
}

// Percentile returns the p-th percentile (0..100) of the accept latencies.
func (l *Load) Percentile(p float64) time.Duration {
	l.mu.Lock()
	lat := append([]time.Duration(nil), l.latencies...)
	l.mu.Unlock()
	if len(lat) == 0 {
		return 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	i := int(float64(len(lat)-1) * p / 100)
	return lat[i]
}
