package relay

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// TestServerTLSSuites: TLS 1.2 offers only ECDHE with AES-GCM or
// ChaCha20-Poly1305; CBC suites with SHA-1 are refused; TLS 1.1 too.
func TestServerTLSSuites(t *testing.T) {
	r := startRelay(t, relayOpts{})
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"ECDHE-ECDSA-AES128-GCM", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true},
		{"ECDHE-ECDSA-CHACHA20-POLY1305", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true},
		{"ECDHE-ECDSA-AES128-SHA (CBC)", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false},
		{"ECDHE-ECDSA-AES256-SHA (CBC)", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}}, false},
		{"ECDHE-ECDSA-AES128-SHA256 (CBC)", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := tt.client.Clone()
			conf.RootCAs, conf.ServerName = r.pki.pool, "localhost"
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", r.addrs.Submissions.String(), conf)
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("handshake: %v, want success %v", err, tt.ok)
			}
		})
	}
}
