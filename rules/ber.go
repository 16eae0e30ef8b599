package rules

import (
	"errors"
	"fmt"
)

// CMS (RFC 5652, RFC 5083) structure, read as BER: S/MIME clients write
// indefinite lengths (NSS, which Thunderbird uses; OpenSSL when streaming),
// which encoding/asn1 and cryptobyte do not read. Only the structure is
// looked at; nothing is decrypted.

type berElement struct {
	class       byte // 0 universal, 2 context-specific
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

var errBER = errors.New("malformed BER")

func (e berElement) is(class byte, tag uint32, constructed bool) bool {
	return e.class == class && e.tag == tag && e.constructed == constructed
}

// readBER reads one element; indefinite lengths are followed to their
// end-of-contents through the nested elements.
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

// children reads the elements inside a constructed one.
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
// which BER may split into constructed pieces.
func (e berElement) octets(depth int) (int, error) {
	if !e.constructed {
		return len(e.content), nil
	}
	kids, err := e.children(depth)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range kids {
		if k.class != berUniversal || k.tag != tagOctetString {
			return 0, fmt.Errorf("%w: a piece of an OCTET STRING is not one", errBER)
		}
		m, err := k.octets(depth + 1)
		if err != nil {
			return 0, err
		}
		n += m
	}
	return n, nil
}

// octetBytes is the value of an OCTET STRING, its BER pieces joined.
func (e berElement) octetBytes(depth int) ([]byte, error) {
	if !e.constructed {
		return e.content, nil
	}
	kids, err := e.children(depth)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, k := range kids {
		if k.class != berUniversal || k.tag != tagOctetString {
			return nil, fmt.Errorf("%w: a piece of an OCTET STRING is not one", errBER)
		}
		b, err := k.octetBytes(depth + 1)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// smallInt reads an INTEGER of one octet (CMS versions).
func (e berElement) smallInt() (int, bool) {
	if !e.is(berUniversal, tagInteger, false) || len(e.content) != 1 || e.content[0] >= 0x80 {
		return 0, false
	}
	return int(e.content[0]), true
}
