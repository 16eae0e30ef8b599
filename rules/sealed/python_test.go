package sealed

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/internal/testutil"
)

// pythonWalk parses a message with Python's email package (the modern
// policy, which reports every defect it finds) and prints each part's
// media type, then the defects, the Subject, the text body and the
// SHA-256 of message.pdf.
const pythonWalk = `
import email, email.policy, hashlib, sys
msg = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
defects = list(msg.defects)
for part in msg.walk():
    defects += part.defects
    print('part', part.get_content_type(), part.get_filename() or '')
    if part.get_filename() == 'message.pdf':
        print('pdf', hashlib.sha256(part.get_payload(decode=True)).hexdigest())
print('defects', len(defects), defects)
print('subject', msg['subject'])
print('text', msg.get_body(('plain',)).get_content().replace('\n', ' '))
print('html', msg.get_body(('html',)).get_content().replace('\n', ' '))
`

func TestPythonReadsTheSealedMessage(t *testing.T) {
	testutil.RequireTools(t, "python3")
	raw, _ := richMessage()
	s := seal(t, raw, testOptions())
	path := writeFile(t, t.TempDir(), "sealed.eml", s.outer)
	out, err := exec.Command("python3", "-c", pythonWalk, path).CombinedOutput()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		"part multipart/mixed \npart multipart/alternative \npart text/plain \npart text/html \npart application/pdf message.pdf\n",
		"pdf " + s.res.PDFSHA256 + "\n",
		"defects 0 []\n",
		"subject Secure message from Praxis Beispiel\n",
		"text Your therapist sent you a secure message.",
		"html <p>Your therapist sent you a secure message.",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Python's email parser: want %q in\n%s", want, got)
		}
	}
}
