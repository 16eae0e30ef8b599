package main

import (
	"os"
	"os/user"
	"strconv"
	"strings"
)

// recorder is who a record says made it (--by): the flag, else the person
// behind the command (invokingUser).
func recorder(by string) string {
	if by != "" {
		return by
	}
	return invokingUser()
}

// loginUIDFile holds the kernel's login uid: the user who logged in to this
// session, kept across sudo, su and runuser.
var loginUIDFile = "/proc/self/loginuid"

// invokingUser is the person behind a command run as the service's user or
// root: the user who ran sudo ($SUDO_USER), else the one who logged in (so
// `su - sealpost` or `runuser -u sealpost` is not recorded as "sealpost"),
// else the user running it.
func invokingUser() string {
	sudoUser := os.Getenv("SUDO_USER")
	if sudoUser != "" && sudoUser != "root" {
		return sudoUser
	}
	if b, err := os.ReadFile(loginUIDFile); err == nil {
		// 4294967295 (-1): no login session (a service, a container).
		if id := strings.TrimSpace(string(b)); id != "" && id != "4294967295" {
			if u, err := user.LookupId(id); err == nil {
				return u.Username
			}
			if _, err := strconv.Atoi(id); err == nil {
				return "uid " + id
			}
		}
	}
	if sudoUser != "" {
		return sudoUser
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
