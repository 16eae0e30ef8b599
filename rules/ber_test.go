package rules

import (
	"bytes"
	"errors"
	"testing"
)

// TestReadBER: the forms BER allows and CMS writers use are read; what
// BER does not allow is refused.
func TestReadBER(t *testing.T) {
	abc := []byte("abc")
	for _, tt := range []struct {
		name string
		in   []byte
		want []byte // the OCTET STRING's value; nil: refused
	}{
		{"short length", []byte{0x04, 0x03, 'a', 'b', 'c'}, abc},
		{"long length", append([]byte{0x04, 0x81, 0x80}, bytes.Repeat([]byte{'x'}, 128)...), bytes.Repeat([]byte{'x'}, 128)},
		{"long length not the shortest (BER, not DER)", []byte{0x04, 0x82, 0x00, 0x03, 'a', 'b', 'c'}, abc},
		{"pieces, definite", []byte{0x24, 0x07, 0x04, 0x01, 'a', 0x04, 0x02, 'b', 'c'}, abc},
		{"pieces, indefinite", []byte{0x24, 0x80, 0x04, 0x01, 'a', 0x04, 0x02, 'b', 'c', 0, 0}, abc},
		{"pieces of pieces", []byte{0x24, 0x80, 0x24, 0x80, 0x04, 0x01, 'a', 0, 0, 0x04, 0x02, 'b', 'c', 0, 0}, abc},
		{"indefinite length of a primitive", []byte{0x04, 0x80, 'a', 'b', 'c', 0, 0}, nil},
		{"a stray end-of-contents", []byte{0, 0}, nil},
		{"length beyond the data", []byte{0x04, 0x05, 'a', 'b', 'c'}, nil},
		{"length of five octets", []byte{0x04, 0x85, 0, 0, 0, 0, 3, 'a', 'b', 'c'}, nil},
		{"reserved length octet", []byte{0x04, 0xff, 'a'}, nil},
		{"no end-of-contents", []byte{0x24, 0x80, 0x04, 0x01, 'a'}, nil},
		{"a piece that is not an OCTET STRING", []byte{0x24, 0x80, 0x04, 0x01, 'a', 0x02, 0x01, 0x01, 0, 0}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			el, rest, err := readBER(tt.in, 0)
			var got []byte
			if err == nil {
				got, err = el.octetBytes(0)
			}
			if tt.want == nil {
				if err == nil {
					t.Fatalf("read as %q", got)
				}
				if !errors.Is(err, errBER) {
					t.Fatalf("%v does not wrap errBER", err)
				}
				return
			}
			if err != nil || len(rest) != 0 || !bytes.Equal(got, tt.want) {
				t.Fatalf("read %q, %d octets left, %v; want %q", got, len(rest), err, tt.want)
			}
			if n, err := el.octets(0); err != nil || n != len(tt.want) {
				t.Fatalf("octets = %d, %v; want %d", n, err, len(tt.want))
			}
		})
	}
}

// TestReadBERTags: a tag number over 30 takes more octets (four at most),
// and the class and constructed bit are read from the first.
func TestReadBERTags(t *testing.T) {
	el, _, err := readBER([]byte{0xbf, 0x81, 0x00, 0x00}, 0) // [128] constructed, empty
	if err != nil || !el.is(berContext, 128, true) {
		t.Fatalf("got %+v, %v; want [128] constructed", el, err)
	}
	if _, _, err := readBER([]byte{0x9f, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00}, 0); err == nil {
		t.Error("a tag of five octets read")
	}
}

// TestReadBERNestingLimit: a BER element nested deeper than the limit is
// refused, not followed.
func TestReadBERNestingLimit(t *testing.T) {
	deep := bytes.Repeat([]byte{0x30, 0x80}, 10000)
	if _, _, err := readBER(deep, 0); err == nil {
		t.Error("10,000 nested indefinite lengths read")
	}
}

// TestBERChildrenLimit: a constructed element with more children than
// maxBERChildren is read whole, but its children are not listed.
func TestBERChildrenLimit(t *testing.T) {
	for _, n := range []int{maxBERChildren, maxBERChildren + 1} {
		in := append(append([]byte{0x30, 0x80}, bytes.Repeat([]byte{0x05, 0x00}, n)...), 0, 0)
		el, _, err := readBER(in, 0)
		if err != nil {
			t.Fatalf("%d children: %v", n, err)
		}
		kids, err := el.children(0)
		if (err == nil) != (n <= maxBERChildren) || (err == nil && len(kids) != n) {
			t.Errorf("%d children: %d listed, %v", n, len(kids), err)
		}
	}
}
