//go:build !amd64 || purego

package seipd

var haveCFBAsm = false

func expandKey([]byte) ([]byte, int) { return nil, 0 }

func (c *cfb) blocksAsm(dst, src []byte) bool { return false }

var haveFusedAsm = false

func (s *writer) fused(dst, p []byte) bool { return false }
