package relay

import (
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// BenchmarkSubmit measures accepting 4 KB messages over STARTTLS with 20
// concurrent sessions (each message durable in the spool before its 250).
func BenchmarkSubmit(b *testing.B) {
	r := startRelayB(b)
	body := testMessage(testFrom, "a@practice.example", "bench", strings.Repeat(strings.Repeat("x", 78)+"\r\n", 50))
	const sessions = 20
	var wg sync.WaitGroup
	per := b.N/sessions + 1
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for s := 0; s < sessions; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.DialStartTLS(r.addrs.Submission.String(), &tls.Config{RootCAs: r.pki.Pool, ServerName: "localhost"})
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			if err := c.Auth(sasl.NewPlainClient("", testUser, testPassword)); err != nil {
				b.Error(err)
				return
			}
			for i := 0; i < per; i++ {
				if err := send(c, testFrom, []string{"a@practice.example"}, body); err != nil {
					b.Error(fmt.Errorf("send: %w", err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		logs := r.logs.String()
		b.Log(logs[:min(len(logs), 3000)])
	}
}
