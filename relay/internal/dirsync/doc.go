// Package dirsync makes the names in a folder durable for many callers with
// one fsync: the spool's queue folder and the outbox's new folder, where
// every message that arrives together is a new name. It knows nothing of
// what the files hold.
package dirsync
