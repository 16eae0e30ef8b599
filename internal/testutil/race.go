//go:build race

package testutil

// RaceEnabled says the race detector is on: it makes sync.Pool drop what
// is put back at random and instruments allocation, so a test that counts
// allocations measures the detector, not the code.
const RaceEnabled = true
