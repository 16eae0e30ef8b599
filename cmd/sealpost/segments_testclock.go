//go:build sealpost_testclock

package main

import (
	"os"
	"strconv"
)

// The e2e tests' small segments: SEALPOST_TEST_SEGMENT_BYTES closes a
// segment once it is this large, so that segments are sealed (and copied
// off-site) while a test runs.
func init() {
	if n, err := strconv.ParseInt(os.Getenv("SEALPOST_TEST_SEGMENT_BYTES"), 10, 64); err == nil {
		testSegmentBytes = n
	}
}
