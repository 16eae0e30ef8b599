package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Duration is a time span written as Go does ("90s", "4h30m") or with the
// units admins use for queues and retention: d (days), w (weeks), y (365 days).
type Duration time.Duration

var spanRE = regexp.MustCompile(`^(\d+)([dwy])$`)

func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if m := spanRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return fmt.Errorf("invalid duration %q", s)
		}
		day := 24 * time.Hour
		unit := map[string]time.Duration{"d": day, "w": 7 * day, "y": 365 * day}[m[2]]
		*d = Duration(time.Duration(n) * unit)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q (examples: 30s, 15m, 4h, 5d, 7y)", s)
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
