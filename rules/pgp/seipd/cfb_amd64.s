//go:build !purego

#include "textflag.h"

// The whitening and the first nine rounds, common to every key size: the
// round keys in X1-X10, the block in X0.
#define ROUNDS_1_9 \
	VPXOR X1, X0, X0; \
	VAESENC X2, X0, X0; VAESENC X3, X0, X0; VAESENC X4, X0, X0; \
	VAESENC X5, X0, X0; VAESENC X6, X0, X0; VAESENC X7, X0, X0; \
	VAESENC X8, X0, X0; VAESENC X9, X0, X0; VAESENC X10, X0, X0

// XOR the plaintext block into the keystream, store the ciphertext (the
// next block's feedback), and go round again while blocks are left.
#define NEXT_BLOCK(loop) \
	VPXOR (SI), X0, X0; VMOVDQU X0, (DI); \
	ADDQ $16, SI; ADDQ $16, DI; \
	DECQ DX; JNZ loop

// func cfbEncryptAVX(xk *byte, rounds int, reg *byte, dst, src *byte, blocks int)
//
// OpenPGP CFB over whole blocks: C_i = E(C_(i-1)) XOR P_i, starting from
// the ciphertext block in reg, which receives the last one. The round keys
// stay in registers; each block's rounds wait on the previous block, so the
// loop runs at the latency of AESENC. VEX encoding lets the plaintext be
// XORed straight from (unaligned) memory: all sixteen registers are taken.
TEXT ·cfbEncryptAVX(SB), NOSPLIT, $0-48
	MOVQ xk+0(FP), AX
	MOVQ rounds+8(FP), CX
	MOVQ reg+16(FP), R8
	MOVQ dst+24(FP), DI
	MOVQ src+32(FP), SI
	MOVQ blocks+40(FP), DX
	VMOVDQU 0(R8), X0
	VMOVDQU 0(AX), X1
	VMOVDQU 16(AX), X2
	VMOVDQU 32(AX), X3
	VMOVDQU 48(AX), X4
	VMOVDQU 64(AX), X5
	VMOVDQU 80(AX), X6
	VMOVDQU 96(AX), X7
	VMOVDQU 112(AX), X8
	VMOVDQU 128(AX), X9
	VMOVDQU 144(AX), X10
	VMOVDQU 160(AX), X11
	CMPQ CX, $12
	JB   aes128
	VMOVDQU 176(AX), X12
	VMOVDQU 192(AX), X13
	JE   aes192
	VMOVDQU 208(AX), X14
	VMOVDQU 224(AX), X15

aes256:
	ROUNDS_1_9
	VAESENC X11, X0, X0
	VAESENC X12, X0, X0
	VAESENC X13, X0, X0
	VAESENC X14, X0, X0
	VAESENCLAST X15, X0, X0
	NEXT_BLOCK(aes256)
	JMP  done

aes192:
	ROUNDS_1_9
	VAESENC X11, X0, X0
	VAESENC X12, X0, X0
	VAESENCLAST X13, X0, X0
	NEXT_BLOCK(aes192)
	JMP  done

aes128:
	ROUNDS_1_9
	VAESENCLAST X11, X0, X0
	NEXT_BLOCK(aes128)

done:
	VMOVDQU X0, 0(R8)
	VZEROUPPER
	RET

// func subWord(w uint32) uint32
//
// The AES S-box applied to each octet of w, by the instruction rather than
// a table, so the key schedule reads no memory indexed by the key. With w
// in all four columns ShiftRows changes nothing, and a zero round key
// leaves AESENCLAST's SubBytes alone.
TEXT ·subWord(SB), NOSPLIT, $0-12
	MOVL w+0(FP), AX
	MOVQ AX, X0
	PSHUFD $0, X0, X0
	PXOR X1, X1
	AESENCLAST X1, X0
	MOVQ X0, AX
	MOVL AX, ret+8(FP)
	RET

// The 80 rounds of SHA-1 over the 64 octets at SI with SHA-NI, in four
// parts to interleave with the four AES blocks of the same octets: state
// in X0 (ABCD) and X5/X6 (E), message words in X1-X4, the byte-order mask
// in X7, the block's starting state saved in X8 (E) and X9 (ABCD). The
// sequence is the standard one (Intel's SHA extensions paper; Go's
// crypto/sha1 runs the same).
#define SHA1_ROUNDS_0_19 \
	VMOVDQU (SI), X1; PSHUFB X7, X1; PADDD X1, X5; VMOVDQA X0, X6; SHA1RNDS4 $0x00, X5, X0; \
	VMOVDQU 16(SI), X2; PSHUFB X7, X2; SHA1NEXTE X2, X6; VMOVDQA X0, X5; SHA1RNDS4 $0x00, X6, X0; SHA1MSG1 X2, X1; \
	VMOVDQU 32(SI), X3; PSHUFB X7, X3; SHA1NEXTE X3, X5; VMOVDQA X0, X6; SHA1RNDS4 $0x00, X5, X0; SHA1MSG1 X3, X2; PXOR X3, X1; \
	VMOVDQU 48(SI), X4; PSHUFB X7, X4; SHA1NEXTE X4, X6; VMOVDQA X0, X5; SHA1MSG2 X4, X1; SHA1RNDS4 $0x00, X6, X0; SHA1MSG1 X4, X3; PXOR X4, X2; \
	SHA1NEXTE X1, X5; VMOVDQA X0, X6; SHA1MSG2 X1, X2; SHA1RNDS4 $0x00, X5, X0; SHA1MSG1 X1, X4; PXOR X1, X3

#define SHA1_ROUNDS_20_39 \
	SHA1NEXTE X2, X6; VMOVDQA X0, X5; SHA1MSG2 X2, X3; SHA1RNDS4 $0x01, X6, X0; SHA1MSG1 X2, X1; PXOR X2, X4; \
	SHA1NEXTE X3, X5; VMOVDQA X0, X6; SHA1MSG2 X3, X4; SHA1RNDS4 $0x01, X5, X0; SHA1MSG1 X3, X2; PXOR X3, X1; \
	SHA1NEXTE X4, X6; VMOVDQA X0, X5; SHA1MSG2 X4, X1; SHA1RNDS4 $0x01, X6, X0; SHA1MSG1 X4, X3; PXOR X4, X2; \
	SHA1NEXTE X1, X5; VMOVDQA X0, X6; SHA1MSG2 X1, X2; SHA1RNDS4 $0x01, X5, X0; SHA1MSG1 X1, X4; PXOR X1, X3; \
	SHA1NEXTE X2, X6; VMOVDQA X0, X5; SHA1MSG2 X2, X3; SHA1RNDS4 $0x01, X6, X0; SHA1MSG1 X2, X1; PXOR X2, X4

#define SHA1_ROUNDS_40_59 \
	SHA1NEXTE X3, X5; VMOVDQA X0, X6; SHA1MSG2 X3, X4; SHA1RNDS4 $0x02, X5, X0; SHA1MSG1 X3, X2; PXOR X3, X1; \
	SHA1NEXTE X4, X6; VMOVDQA X0, X5; SHA1MSG2 X4, X1; SHA1RNDS4 $0x02, X6, X0; SHA1MSG1 X4, X3; PXOR X4, X2; \
	SHA1NEXTE X1, X5; VMOVDQA X0, X6; SHA1MSG2 X1, X2; SHA1RNDS4 $0x02, X5, X0; SHA1MSG1 X1, X4; PXOR X1, X3; \
	SHA1NEXTE X2, X6; VMOVDQA X0, X5; SHA1MSG2 X2, X3; SHA1RNDS4 $0x02, X6, X0; SHA1MSG1 X2, X1; PXOR X2, X4; \
	SHA1NEXTE X3, X5; VMOVDQA X0, X6; SHA1MSG2 X3, X4; SHA1RNDS4 $0x02, X5, X0; SHA1MSG1 X3, X2; PXOR X3, X1

#define SHA1_ROUNDS_60_79 \
	SHA1NEXTE X4, X6; VMOVDQA X0, X5; SHA1MSG2 X4, X1; SHA1RNDS4 $0x03, X6, X0; SHA1MSG1 X4, X3; PXOR X4, X2; \
	SHA1NEXTE X1, X5; VMOVDQA X0, X6; SHA1MSG2 X1, X2; SHA1RNDS4 $0x03, X5, X0; SHA1MSG1 X1, X4; PXOR X1, X3; \
	SHA1NEXTE X2, X6; VMOVDQA X0, X5; SHA1MSG2 X2, X3; SHA1RNDS4 $0x03, X6, X0; PXOR X2, X4; \
	SHA1NEXTE X3, X5; VMOVDQA X0, X6; SHA1MSG2 X3, X4; SHA1RNDS4 $0x03, X5, X0; \
	SHA1NEXTE X4, X6; VMOVDQA X0, X5; SHA1RNDS4 $0x03, X6, X0; \
	SHA1NEXTE X8, X5; PADDD X9, X0

// One CFB block at offset off: X10 = E(X10) XOR P, stored as C. The round
// keys are read from memory (AX): the SHA-1 rounds need the registers, and
// the loads are off the chain of AESENCs that sets the pace.
#define CFB_MEM_ROUNDS_1_9 \
	VPXOR 0(AX), X10, X10; \
	VAESENC 16(AX), X10, X10; VAESENC 32(AX), X10, X10; VAESENC 48(AX), X10, X10; \
	VAESENC 64(AX), X10, X10; VAESENC 80(AX), X10, X10; VAESENC 96(AX), X10, X10; \
	VAESENC 112(AX), X10, X10; VAESENC 128(AX), X10, X10; VAESENC 144(AX), X10, X10

#define CFB_STORE(off) \
	VPXOR off(SI), X10, X10; VMOVDQU X10, off(DI)

#define CFB_BLOCK_128(off) \
	CFB_MEM_ROUNDS_1_9; \
	VAESENCLAST 160(AX), X10, X10; \
	CFB_STORE(off)

#define CFB_BLOCK_256(off) \
	CFB_MEM_ROUNDS_1_9; \
	VAESENC 160(AX), X10, X10; VAESENC 176(AX), X10, X10; VAESENC 192(AX), X10, X10; \
	VAESENC 208(AX), X10, X10; \
	VAESENCLAST 224(AX), X10, X10; \
	CFB_STORE(off)

// func cfbSHA1AVX(xk *byte, rounds int, reg *byte, h *[5]uint32, dst, src *byte, chunks int)
//
// CFB (as cfbEncryptAVX) and SHA-1 (the modification detection code) over
// the same plaintext, 64 octets at a time, AES-128 or AES-256. AES in CFB
// waits on itself block after block and leaves most of the core idle; the
// SHA-1 rounds, independent of it, run in that idle time.
TEXT ·cfbSHA1AVX(SB), NOSPLIT, $0-56
	MOVQ xk+0(FP), AX
	MOVQ rounds+8(FP), CX
	MOVQ reg+16(FP), R8
	MOVQ h+24(FP), R9
	MOVQ dst+32(FP), DI
	MOVQ src+40(FP), SI
	MOVQ chunks+48(FP), DX
	VZEROUPPER
	VMOVDQU 0(R8), X10
	PINSRD  $3, 16(R9), X5
	VMOVDQU (R9), X0
	PAND    sha1UpperMask<>+0(SB), X5
	PSHUFD  $0x1b, X0, X0
	VMOVDQU sha1ShuffleMask<>+0(SB), X7
	CMPQ CX, $14
	JEQ  fused256

fused128:
	VMOVDQA X5, X8
	VMOVDQA X0, X9
	CFB_BLOCK_128(0)
	SHA1_ROUNDS_0_19
	CFB_BLOCK_128(16)
	SHA1_ROUNDS_20_39
	CFB_BLOCK_128(32)
	SHA1_ROUNDS_40_59
	CFB_BLOCK_128(48)
	SHA1_ROUNDS_60_79
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ DX
	JNZ  fused128
	JMP  fusedDone

fused256:
	VMOVDQA X5, X8
	VMOVDQA X0, X9
	CFB_BLOCK_256(0)
	SHA1_ROUNDS_0_19
	CFB_BLOCK_256(16)
	SHA1_ROUNDS_20_39
	CFB_BLOCK_256(32)
	SHA1_ROUNDS_40_59
	CFB_BLOCK_256(48)
	SHA1_ROUNDS_60_79
	ADDQ $64, SI
	ADDQ $64, DI
	DECQ DX
	JNZ  fused256

fusedDone:
	PSHUFD  $0x1b, X0, X0
	VMOVDQU X0, (R9)
	PEXTRD  $3, X5, 16(R9)
	VMOVDQU X10, 0(R8)
	VZEROUPPER
	RET

DATA sha1UpperMask<>+0(SB)/8, $0x0000000000000000
DATA sha1UpperMask<>+8(SB)/8, $0xffffffff00000000
GLOBL sha1UpperMask<>(SB), RODATA, $16

DATA sha1ShuffleMask<>+0(SB)/8, $0x08090a0b0c0d0e0f
DATA sha1ShuffleMask<>+8(SB)/8, $0x0001020304050607
GLOBL sha1ShuffleMask<>(SB), RODATA, $16

// func cpuid(leaf, sub uint32) (a, b, c, d uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, a+8(FP)
	MOVL BX, b+12(FP)
	MOVL CX, c+16(FP)
	MOVL DX, d+20(FP)
	RET
