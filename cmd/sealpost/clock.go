package main

import "time"

// clockNow is the relay's clock: the time mail is accepted, held and
// released by, and acknowledgements are dated by. Builds with the tag
// sealpost_testclock replace it (clock_testclock.go); release builds do
// not contain that file.
var clockNow = time.Now
