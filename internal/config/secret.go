package config

import (
	"fmt"
	"os"
	"strings"
)

// ReadSecret reads a file the configuration names for a password or a
// client secret: its first line, without the line end.
func ReadSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.SplitN(string(b), "\n", 2)[0]
	s = strings.TrimRight(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}
