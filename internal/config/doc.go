// Package config reads sealpost.toml: the types of its sections, the
// defaults, and the checks that name every problem with its key and line
// (Load). It asks the owners of what it checks: rules for the policy's
// settings, oauth for [oauth2], the relay for password hashes.
//
// It holds no state and starts nothing; it does not read the files the
// configuration names except through ReadSecret, when asked.
package config
