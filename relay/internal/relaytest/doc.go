// Package relaytest holds what the tests of several relay packages share: a
// mail client's words (messages, sending, reading replies, a session typed
// by hand), a stand-in for the provider's submission server, and an archive
// in memory. Only tests import it; it imports no relay package, so that
// every one of them can use it.
package relaytest
