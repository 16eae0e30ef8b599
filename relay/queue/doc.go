// Package queue keeps what the relay accepted until the provider has it: the
// spool (one file per message, fsynced before the client hears 250), each
// message's entry and its life cycle from commit to removal, the schedule
// and its delivery workers, retries, delivery status notifications, every
// outcome into the archive, the operations `sealpost queue` performs on a
// running relay (the control socket, server and client) or on a stopped one
// (Offline).
//
// It hands copies to a provider.Deliverer and records outcomes in the
// archive; it decides no policy (a withdrawn consent is asked of
// ConsentCheck, a sealed copy's passphrase of SealedCheck) and never reads
// what a client sends.
package queue
