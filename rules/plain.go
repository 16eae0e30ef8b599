package rules

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// writePlain writes the plain copy of a submitted message into out and
// returns what the transform learnt, the copy's name, and the kind of client
// encryption it was passed on with ("" when it was not).
//
// The submitted message is read once, off the wire, and never stored: a
// message that claims to be encrypted as a whole is copied as it is into
// SubmittedCopyName (minus Bcc), then read back and checked. When the claim
// does not hold, that copy is transformed again like any clear message into
// RewrittenCopyName, which becomes the plain copy (the relay drops copies no one
// names). edit, when set, changes the top-level header of the copy.
func (s *policySettings) writePlain(msg io.Reader, out Sink, edit headerEdit) (*transformResult, string, string, error) {
	tr, err := transformInto(out, SubmittedCopyName, msg, s.notice,
		func(w io.Writer, r io.Reader, n *noticeText) (*transformResult, error) {
			return transform(w, r, n, true, edit)
		})
	if err != nil {
		return nil, "", "", err
	}
	if tr.protected != "encrypted" {
		return tr, SubmittedCopyName, "", nil
	}
	kind, err := verifyCopy(out, SubmittedCopyName)
	if err == nil {
		return tr, SubmittedCopyName, kind, nil
	}
	if !errors.Is(err, errNotEncrypted) {
		return nil, "", "", err
	}
	claimed, err := out.Open(SubmittedCopyName)
	if err != nil {
		return nil, "", "", err
	}
	defer claimed.Close()
	tr, err = transformInto(out, RewrittenCopyName, claimed, s.notice, transformClaimed)
	if err != nil {
		return nil, "", "", err
	}
	return tr, RewrittenCopyName, "", nil
}

// transformInto runs a transform from r into a new copy named name. Its
// errors are sorted: reading r or writing the copy failed (returned as
// they are: temporary for the relay), a line too long to send, or the
// message's own structure (a Refusal marked Malformed).
func transformInto(out Sink, name string, r io.Reader, n *noticeText,
	transform func(io.Writer, io.Reader, *noticeText) (*transformResult, error)) (*transformResult, error) {
	w, err := out.Create(name)
	if err != nil {
		return nil, err
	}
	src, dst := &recordingReader{r: r}, &recordingWriter{w: w}
	tr, err := transform(dst, src, n)
	if cerr := w.Close(); err == nil && cerr != nil {
		return nil, cerr
	}
	switch {
	case src.err != nil:
		return nil, fmt.Errorf("read the message: %w", src.err)
	case dst.err != nil:
		return nil, fmt.Errorf("write copy %s: %w", name, dst.err)
	case err == nil:
		return tr, nil
	case errors.Is(err, ErrLineTooLong):
		return nil, err
	}
	return nil, malformed(err)
}

// verifyCopy checks a copy with verifyEncrypted. Errors that do not wrap
// errNotEncrypted are the Sink's.
func verifyCopy(out Sink, name string) (string, error) {
	f, err := out.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	src := &recordingReader{r: f}
	kind, err := verifyEncrypted(src)
	if src.err != nil {
		return "", fmt.Errorf("read copy %s: %w", name, src.err)
	}
	return kind, err
}

// malformed is the refusal of a message whose own structure is broken: no
// use retrying it as it is.
func malformed(err error) *Refusal {
	what := "its MIME structure cannot be read"
	var me *mimeError
	var b64 base64.CorruptInputError
	switch {
	case errors.Is(err, errPartCutOff):
		what = "it ends inside a part: a closing MIME boundary is missing, as if the message was cut off"
	case errors.As(err, &me):
		what = me.reason
	case errors.Is(err, io.ErrUnexpectedEOF):
		what = "it ends in the middle of an encoded part, as if it was cut off"
	case errors.As(err, &b64):
		what = "the base64 encoding of a part is damaged"
	case strings.HasPrefix(err.Error(), "quotedprintable:"):
		what = "the quoted-printable encoding of a part is damaged"
	}
	return &Refusal{Malformed: true, Code: RefusalMalformed,
		Reason: "The message is damaged: " + what + "; send it again, and if it is refused again, write it anew or ask your admin"}
}

// recordingReader remembers the first error of its reader other than EOF:
// an error while reading is then known to be the source's, not the
// message's.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// Size is how much the reader beneath holds, when it says (a spool
// section does; 0 when not): sealed.Seal then reads the message into one
// buffer of that size instead of growing one.
func (r *recordingReader) Size() int64 {
	if s, ok := r.r.(interface{ Size() int64 }); ok {
		return s.Size()
	}
	return 0
}

// recordingWriter remembers the first error of its writer.
type recordingWriter struct {
	w   io.Writer
	err error
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}
