package rules

import (
	"errors"
	"fmt"
)

// BER (ITU-T X.690) as CMS writers produce it, read only as far as the
// structure checks of S/MIME bodies need (cms.go); nothing is decrypted.
// It is written here because S/MIME clients write indefinite lengths (NSS,
// which Thunderbird uses; OpenSSL when streaming), which encoding/asn1 and
// cryptobyte refuse. cryptobyte could read the definite-length elements,
// but the end of an indefinite-length element is only found by reading
// every element inside it, definite ones included, and cryptobyte holds
// those to DER's rules (shortest length form, tag numbers under 31): it
// would be a second reader accepting less than this one beside it, not a
// smaller one.
//
// Limits: elements nested at most maxBERDepth deep, at most maxBERChildren
// in one constructed element read with children, tags and lengths of at
// most four octets; the input is what the caller holds in memory (an
// S/MIME body, at most maxEncryptedDER). FuzzCMSEnveloped runs it.

// berElement is one element: its identifier, and its contents (the
// encodings of its children when it is constructed).
type berElement struct {
	class       byte // berUniversal, berContext (or 1 application, 3 private)
	tag         uint32
	constructed bool
	content     []byte // for a constructed element: its children, end-of-contents left out
}

const (
	berUniversal = 0
	berContext   = 2

	tagInteger     = 2
	tagOctetString = 4
	tagOID         = 6
	tagSequence    = 16
	tagSet         = 17

	maxBERDepth    = 32
	maxBERChildren = 4096
)

// errBER is wrapped by every reason BER cannot be read.
var errBER = errors.New("malformed BER")

func (e berElement) is(class byte, tag uint32, constructed bool) bool {
	return e.class == class && e.tag == tag && e.constructed == constructed
}

// readBER reads the element at the start of b and returns it and what
// follows it. An indefinite length is followed to its end-of-contents
// through the elements inside, each read in full; depth is how deep the
// element is nested, against maxBERDepth.
func readBER(b []byte, depth int) (berElement, []byte, error) {
	var el berElement
	if depth > maxBERDepth {
		return el, nil, fmt.Errorf("%w: nested more than %d deep", errBER, maxBERDepth)
	}
	if len(b) < 2 {
		return el, nil, fmt.Errorf("%w: truncated", errBER)
	}
	id := b[0]
	b = b[1:]
	el.class, el.constructed, el.tag = id>>6, id&0x20 != 0, uint32(id&0x1f)
	if el.tag == 0x1f {
		el.tag = 0
		for i := 0; ; i++ {
			if len(b) == 0 || i == 4 {
				return el, nil, fmt.Errorf("%w: tag", errBER)
			}
			c := b[0]
			b = b[1:]
			el.tag = el.tag<<7 | uint32(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
	}
	if el.class == berUniversal && el.tag == 0 {
		return el, nil, fmt.Errorf("%w: stray end-of-contents", errBER)
	}
	if len(b) == 0 {
		return el, nil, fmt.Errorf("%w: truncated", errBER)
	}
	l := b[0]
	b = b[1:]
	n := 0
	switch {
	case l < 0x80:
		n = int(l)
	case l == 0x80:
		if !el.constructed {
			return el, nil, fmt.Errorf("%w: indefinite length of a primitive", errBER)
		}
		start := b
		for {
			if len(b) >= 2 && b[0] == 0 && b[1] == 0 {
				el.content = start[:len(start)-len(b)]
				return el, b[2:], nil
			}
			var err error
			if _, b, err = readBER(b, depth+1); err != nil {
				return el, nil, err
			}
		}
	case l == 0xff:
		return el, nil, fmt.Errorf("%w: length", errBER)
	default:
		k := int(l & 0x7f)
		if k > 4 || len(b) < k {
			return el, nil, fmt.Errorf("%w: length", errBER)
		}
		for _, c := range b[:k] {
			n = n<<8 | int(c)
		}
		b = b[k:]
	}
	if n < 0 || n > len(b) {
		return el, nil, fmt.Errorf("%w: length beyond the data", errBER)
	}
	el.content = b[:n]
	return el, b[n:], nil
}

// children reads the elements inside a constructed one, at most
// maxBERChildren.
func (e berElement) children(depth int) ([]berElement, error) {
	if !e.constructed {
		return nil, fmt.Errorf("%w: primitive where constructed expected", errBER)
	}
	var out []berElement
	for b := e.content; len(b) > 0; {
		var el berElement
		var err error
		if el, b, err = readBER(b, depth+1); err != nil {
			return nil, err
		}
		if len(out) == maxBERChildren {
			return nil, fmt.Errorf("%w: too many elements", errBER)
		}
		out = append(out, el)
	}
	return out, nil
}

// octets is the length of an OCTET STRING (or one with an implicit tag),
// its BER pieces added up.
func (e berElement) octets(depth int) (int, error) {
	n := 0
	if err := e.octetPieces(depth, func(p []byte) { n += len(p) }); err != nil {
		return 0, err
	}
	return n, nil
}

// octetBytes is the value of an OCTET STRING, its BER pieces joined.
func (e berElement) octetBytes(depth int) ([]byte, error) {
	if !e.constructed {
		return e.content, nil
	}
	var out []byte
	if err := e.octetPieces(depth, func(p []byte) { out = append(out, p...) }); err != nil {
		return nil, err
	}
	return out, nil
}

// octetPieces calls fn with each piece of an OCTET STRING in order: BER may
// split one into a constructed string of OCTET STRINGs, themselves split or
// not.
func (e berElement) octetPieces(depth int, fn func([]byte)) error {
	if !e.constructed {
		fn(e.content)
		return nil
	}
	kids, err := e.children(depth)
	if err != nil {
		return err
	}
	for _, k := range kids {
		if k.class != berUniversal || k.tag != tagOctetString {
			return fmt.Errorf("%w: a piece of an OCTET STRING is not one", errBER)
		}
		if err := k.octetPieces(depth+1, fn); err != nil {
			return err
		}
	}
	return nil
}

// smallInt reads an INTEGER of one octet (CMS versions).
func (e berElement) smallInt() (int, bool) {
	if !e.is(berUniversal, tagInteger, false) || len(e.content) != 1 || e.content[0] >= 0x80 {
		return 0, false
	}
	return int(e.content[0]), true
}
