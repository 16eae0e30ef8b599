//go:build !race

package testutil

// RaceEnabled says the race detector is on (race.go).
const RaceEnabled = false
