//go:build !amd64 || purego

package seipd

// Without the assembly (cfb_amd64.s), CFB runs as a CBC pass (cfb.blocks)
// and the check through crypto/sha1.
const (
	haveCFBAsm   = false
	haveFusedAsm = false
)

func expandKey([]byte) ([]byte, int) { return nil, 0 }

func (c *cfb) blocksAsm(dst, src []byte) bool { return false }

func (s *writer) fused(dst, p []byte) bool { return false }
