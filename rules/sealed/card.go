package sealed

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"

	"codeberg.org/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/text/unicode/runenames"
)

// CardOptions say what the passphrase card shows.
type CardOptions struct {
	PracticeName string
	Client       string // the client's name as the practice writes it; "" leaves the line out
	Passphrase   string // prepared (CheckPassphrase)
	Crisis       string // the practice's text for a crisis
}

// openingSteps say how to open message.pdf, per kind of device.
var openingSteps = [][2]string{
	{"iPhone, iPad", "Tap message.pdf in the Mail app (or save it to Files and open it there), then type the passphrase."},
	{"Android", "Open message.pdf with a PDF reader (Google Drive's, or Adobe Acrobat Reader), then type the passphrase."},
	{"Windows", "Open message.pdf in a web browser (Edge, Chrome, Firefox) or in Adobe Acrobat Reader, then type the passphrase."},
	{"Mac", "Double-click message.pdf to open it in Preview, then type the passphrase."},
	{"Attached files", "Files sent with a message are inside the PDF: Adobe Acrobat Reader and Firefox show them in their attachments (paperclip) panel."},
}

// Card writes the one-page passphrase card a client takes home (A4, its
// text inside US Letter's margins too; not encrypted: it is meant to be
// printed and kept safe). It shows the practice's name, the client's, the
// passphrase in a large monospaced font with what could be misread spelled
// out, how to open a sealed message on each kind of device, and the
// practice's crisis text. The PDF's metadata names neither the client nor
// the passphrase.
func Card(w io.Writer, c CardOptions) error {
	if !isPrepared(c.Passphrase) {
		return errNotPrepared
	}
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetProducer("", false)
	pdf.SetTitle("Passphrase card", false)
	pdf.SetCreationDate(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) // the card says nothing of when it was made
	pdf.SetModificationDate(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC))
	pdf.AddUTF8FontFromBytes("go", "", goregular.TTF)
	pdf.AddUTF8FontFromBytes("go", "B", gobold.TTF)
	pdf.AddUTF8FontFromBytes("mono", "", gomono.TTF)
	pdf.SetMargins(22, 20, 22)
	pdf.SetAutoPageBreak(true, 20)
	pdf.AddPage()
	width := 210.0 - 44

	pdf.SetFont("go", "B", 18)
	pdf.MultiCell(width, 9, "Your passphrase for secure e-mail", "", "L", false)
	pdf.SetFont("go", "", 11)
	pdf.MultiCell(width, 6, "From "+strings.TrimSpace(c.PracticeName), "", "L", false)
	if client := strings.TrimSpace(c.Client); client != "" {
		pdf.MultiCell(width, 6, "For "+client, "", "L", false)
	}
	pdf.Ln(3)
	pdf.MultiCell(width, 5.5, "E-mails from "+strings.TrimSpace(c.PracticeName)+" reach you with a file called message.pdf, "+
		"locked with this passphrase. When your PDF reader asks for a password, type it exactly as shown.", "", "L", false)
	pdf.Ln(4)

	pdf.SetFont("mono", "", 20)
	pdf.SetFillColor(242, 242, 242)
	pdf.SetDrawColor(90, 90, 90)
	pdf.MultiCell(width, 11, passphraseLines(pdf, printable(c.Passphrase), width-4), "1", "C", true)
	pdf.Ln(2)
	pdf.SetFont("go", "", 10)
	for _, line := range spelling(c.Passphrase) {
		pdf.MultiCell(width, 5, line, "", "L", false)
	}
	pdf.Ln(5)

	pdf.SetFont("go", "B", 12)
	pdf.MultiCell(width, 7, "How to open a secure message", "", "L", false)
	for _, step := range openingSteps {
		y := pdf.GetY()
		pdf.SetFont("go", "B", 10)
		pdf.MultiCell(32, 5, step[0], "", "L", false)
		after := pdf.GetY()
		pdf.SetXY(22+32, y)
		pdf.SetFont("go", "", 10)
		pdf.MultiCell(width-32, 5, step[1], "", "L", false)
		pdf.SetY(max(after, pdf.GetY()) + 1.5)
	}
	pdf.Ln(2)
	pdf.MultiCell(width, 5, "To answer, reply to the e-mail as usual. Your reply is ordinary e-mail, not locked. "+
		"Never send the passphrase by e-mail. Keep this card somewhere safe; if it is lost, or someone else may know "+
		"the passphrase, ask the practice for a new one.", "", "L", false)

	if crisis := strings.TrimSpace(c.Crisis); crisis != "" {
		pdf.Ln(5)
		pdf.SetFillColor(255, 243, 205)
		pdf.SetDrawColor(200, 150, 50)
		pdf.SetFont("go", "B", 11)
		pdf.MultiCell(width, 7, "In a crisis", "LTR", "L", true)
		pdf.SetFont("go", "", 10.5)
		pdf.MultiCell(width, 5.5, crisis+"\n", "LBR", "L", true)
	}
	if pdf.PageNo() != 1 {
		return errors.New("sealed: the passphrase card does not fit on one page: shorten the crisis text")
	}
	if err := pdf.Output(w); err != nil {
		return fmt.Errorf("sealed: write the passphrase card: %w", err)
	}
	return nil
}

// printable is the passphrase as the card's monospaced font can show it:
// a character it lacks as □, named in the spelling below.
func printable(p string) string {
	f, err := loadFont()
	return strings.Map(func(r rune) rune {
		if err == nil && !f.has(r) && r != ' ' {
			return missingMark
		}
		return r
	}, p)
}

// confusable are characters a reader may take for another.
var confusable = map[rune]string{
	'l': "l is the small letter L (not the digit one)",
	'I': "I is the capital letter i",
	'1': "1 is the digit one",
	'|': "| is a vertical bar",
	'O': "O is the capital letter o (not the digit zero)",
	'0': "0 is the digit zero",
	'-': "- is a hyphen (minus sign)",
}

// spelling says in words what the passphrase is made of, and spells out
// each character that could be misread or is hard to find on a keyboard.
func spelling(p string) []string {
	words := strings.Split(p, " ")
	var caps, notes []string
	seen := map[rune]bool{}
	lowerOnly := true
	for _, r := range p {
		if seen[r] || r == ' ' {
			continue
		}
		seen[r] = true
		switch {
		case confusable[r] != "":
			notes = append(notes, confusable[r])
		case r >= 'A' && r <= 'Z':
			caps = append(caps, string(r))
		case r < 0x80 && !unicode.IsLetter(r) && !unicode.IsDigit(r):
			notes = append(notes, fmt.Sprintf("%c is the %s", r, strings.ToLower(runenames.Name(r))))
		case r >= 0x80:
			notes = append(notes, fmt.Sprintf("%c is the %s", r, strings.ToLower(runenames.Name(r))))
		}
		if unicode.IsUpper(r) {
			lowerOnly = false
		}
	}
	first := fmt.Sprintf("Type it as one line: %d words with one space between each", len(words))
	if len(words) == 1 {
		first = "Type it as one line, without spaces"
	}
	if strings.Contains(p, "  ") {
		first = "Type it as one line, with the spaces exactly as shown (two in a row where there are two)"
	}
	if lowerOnly {
		first += ", all in small letters."
	} else {
		first += "."
	}
	out := []string{first}
	if len(caps) > 0 {
		out = append(out, "Capital letters: "+strings.Join(caps, ", ")+".")
	}
	if len(notes) > 8 { // a line each would not leave room for the rest
		return append(out, "Careful: "+strings.Join(notes, "; ")+".")
	}
	for _, n := range notes {
		out = append(out, "•  "+n)
	}
	return out
}

// passphraseLines breaks a passphrase too wide for one line of the box
// into lines of whole words of about equal width (fpdf's own wrapping
// would leave one word alone on the last line); a line break on the card
// stands for a space, as the text under the box says.
func passphraseLines(pdf *fpdf.Fpdf, p string, width float64) string {
	words := strings.Split(p, " ")
	if pdf.GetStringWidth(p) <= width || len(words) < 2 {
		return p
	}
	for lines := 2; lines <= len(words); lines++ {
		per := (len(words) + lines - 1) / lines
		var out []string
		fits := true
		for i := 0; i < len(words); i += per {
			line := strings.Join(words[i:min(i+per, len(words))], " ")
			fits = fits && pdf.GetStringWidth(line) <= width
			out = append(out, line)
		}
		if fits {
			return strings.Join(out, "\n")
		}
	}
	return p
}
