//go:build !purego

#include "textflag.h"

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
	VPXOR   X1, X0, X0
	VAESENC X2, X0, X0
	VAESENC X3, X0, X0
	VAESENC X4, X0, X0
	VAESENC X5, X0, X0
	VAESENC X6, X0, X0
	VAESENC X7, X0, X0
	VAESENC X8, X0, X0
	VAESENC X9, X0, X0
	VAESENC X10, X0, X0
	VAESENC X11, X0, X0
	VAESENC X12, X0, X0
	VAESENC X13, X0, X0
	VAESENC X14, X0, X0
	VAESENCLAST X15, X0, X0
	VPXOR   (SI), X0, X0
	VMOVDQU X0, (DI)
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ DX
	JNZ  aes256
	JMP  done

aes192:
	VPXOR   X1, X0, X0
	VAESENC X2, X0, X0
	VAESENC X3, X0, X0
	VAESENC X4, X0, X0
	VAESENC X5, X0, X0
	VAESENC X6, X0, X0
	VAESENC X7, X0, X0
	VAESENC X8, X0, X0
	VAESENC X9, X0, X0
	VAESENC X10, X0, X0
	VAESENC X11, X0, X0
	VAESENC X12, X0, X0
	VAESENCLAST X13, X0, X0
	VPXOR   (SI), X0, X0
	VMOVDQU X0, (DI)
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ DX
	JNZ  aes192
	JMP  done

aes128:
	VPXOR   X1, X0, X0
	VAESENC X2, X0, X0
	VAESENC X3, X0, X0
	VAESENC X4, X0, X0
	VAESENC X5, X0, X0
	VAESENC X6, X0, X0
	VAESENC X7, X0, X0
	VAESENC X8, X0, X0
	VAESENC X9, X0, X0
	VAESENC X10, X0, X0
	VAESENCLAST X11, X0, X0
	VPXOR   (SI), X0, X0
	VMOVDQU X0, (DI)
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ DX
	JNZ  aes128

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
