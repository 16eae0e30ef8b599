package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
)

// Limits of the content rules' reading of a message that would go out in
// clear: beyond them the message is refused, never passed unread.
const (
	maxScannedText  = 16 << 20 // decoded text, all parts together
	maxScannedDepth = maxMIMEDepth
	maxScannedParts = maxMIMEParts
)

var errTooMuchToScan = errors.New("too much to check")

// scanTexts decodes every text part of the plain copy (transfer encoding and
// charset), wherever it is: after the first part, inside multipart/signed,
// in attachments. The content rules read these, not just the part the
// notice went into. The notice itself is left out of what they read.
func scanTexts(r io.Reader, notice *noticeText) ([]textSample, error) {
	e, err := message.Read(r)
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return nil, &mimeError{"the message cannot be read to check it against the content rules"}
	}
	var drops [][]byte
	for _, n := range []string{notice.plain, notice.flowed, notice.html} {
		if n != "" {
			drops = append(drops, []byte(n))
		}
	}
	var out []textSample
	left, parts := int64(maxScannedText), 0
	err = e.Walk(func(path []int, part *message.Entity, err error) error {
		parts++
		if len(path) > maxScannedDepth || parts > maxScannedParts {
			return errTooMuchToScan
		}
		if part == nil {
			return &mimeError{"a part cannot be read to check it against the content rules"}
		}
		mt, _, cterr := part.Header.ContentType()
		if cterr != nil || part.Header.Get("Content-Type") == "" {
			// No type, or one that cannot be read: read it as text
			// rather than let it pass unread.
			mt = "text/plain"
		}
		if !strings.HasPrefix(mt, "text/") {
			return nil
		}
		// An unknown charset leaves the body as sent: ASCII patterns
		// (numbers, most rules) still match in it.
		b, err := io.ReadAll(io.LimitReader(part.Body, left+1))
		if err != nil {
			return &mimeError{fmt.Sprintf("a text part cannot be decoded to check it against the content rules: %v", err)}
		}
		if int64(len(b)) > left {
			return errTooMuchToScan
		}
		left -= int64(len(b))
		b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
		for _, d := range drops {
			b = bytes.ReplaceAll(b, bytes.ReplaceAll(d, []byte("\r\n"), []byte("\n")), nil)
		}
		out = append(out, textSample{where: "body", text: b})
		return nil
	})
	if errors.Is(err, errTooMuchToScan) {
		return nil, &mimeError{fmt.Sprintf("it holds more than sealpost can check against the content rules (%d MiB of text, %d parts, %d levels); send it encrypted",
			maxScannedText>>20, maxScannedParts, maxScannedDepth)}
	}
	return out, err
}
