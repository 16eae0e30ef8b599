package main

import (
	"net"
	"os"
)

// sdNotify tells systemd (Type=notify) about the service's state: READY=1
// once the listeners are open, RELOADING=1 and READY=1 around a reload,
// STOPPING=1 at shutdown. Without $NOTIFY_SOCKET it does nothing.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}
