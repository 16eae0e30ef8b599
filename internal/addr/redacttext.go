package addr

import "regexp"

// addressLike matches what a provider's reply text may hold of an address:
// "550 5.1.1 <kim@client.example>: Recipient address rejected" names the
// client. Deliberately loose: hiding a word too many costs nothing.
var addressLike = regexp.MustCompile(`[^\s<>"'(),;:\[\]]+@[^\s<>"'(),;:\[\]]+`)

// RedactText replaces every address-like word of free text (a provider's
// reply, an error from a peer) with hash(word), so the text can go into a
// log without naming anybody.
func RedactText(s string, hash func(string) string) string {
	return addressLike.ReplaceAllStringFunc(s, hash)
}
