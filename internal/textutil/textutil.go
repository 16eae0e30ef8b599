// Package textutil holds small text helpers used by several packages.
package textutil

import "strings"

// OneLine collapses every run of white space, line breaks included, into
// one space: for SMTP replies and error lines, which must be one line.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
