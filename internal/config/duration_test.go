package config

import "testing"

func TestDuration(t *testing.T) {
	for in, want := range map[string]string{"90s": "1m30s", "4h": "4h0m0s", "5d": "120h0m0s", "2w": "336h0m0s", "7y": "61320h0m0s"} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D().String() != want {
			t.Errorf("%s -> %v, %v; want %s", in, d.D(), err, want)
		}
	}
	for _, bad := range []string{"", "5", "-1h", "3 days", "1.5d"} {
		var d Duration
		if err := d.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
