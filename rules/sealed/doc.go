// Package sealed writes the copy of a message that a client without an
// OpenPGP key receives: the message as a PDF encrypted with AES-256 that
// the client opens with a passphrase agreed at intake. It also says what a
// passphrase must be (CheckPassphrase), makes one (GeneratePassphrase) and
// prints the card a client takes home (Card).
//
// Seal reads the plain copy of a message (after the notice, without Bcc)
// and writes a whole message: the original's From, To, Cc, Date and
// threading fields, a generic Subject, a short text and HTML body that
// says how to open the attachment, and message.pdf. The PDF is PDF 2.0
// with the standard security handler, revision 6 (AES-256; the user
// password is the passphrase, the owner password random and kept by
// nobody), written by pdfcpu: no part of the security handler is written
// here, and Seal checks that pdfcpu used revision 6, which it silently
// does not for documents below PDF 2.0. Inside: a header block (From, To,
// Cc, Date, Subject), the text (text/plain, or the HTML rendered to text
// with its links), the practice's notice, and as embedded files every
// attachment byte for byte under its own name, message.eml (the original)
// and message.txt (its text in UTF-8). The pages are set in Go Regular
// (Latin with accents, Greek, Cyrillic), embedded with a ToUnicode map so
// that text can be searched and extracted; characters the font lacks are
// marked and the page says where the full text is. The PDF has no Info
// dictionary and no XMP metadata: nothing of the message is readable
// without the passphrase.
//
// Seal holds the message once in memory, its decoded attachments, and the
// encrypted copy of one of them at a time while it is written; the PDF is
// streamed into the base64 of the output. The pages are laid out here,
// straight into pdfcpu's objects, with the font's advance widths: no
// second PDF library, no parse of a PDF written first. What revision 6
// derives from a passphrase (about 7 ms of CPU) is kept per passphrase for
// the process's life (keyCache), so a client's later PDFs cost a fraction
// of that.
//
// pdfcpu is pinned (go.mod): the key cache and the page objects use its
// internals, and TestPDFReaders checks every build with qpdf, poppler and
// mupdf.
package sealed
