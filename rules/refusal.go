package rules

import (
	"fmt"
	"time"
)

// The codes of refusals: the log line and the archive's refusal record
// carry one, and `sealpost refusals show` tells the admin its fix
// (AdminFix). A therapist never sees a code, only the Reason.
const (
	RefusalNothingOnFile       = "nothing_on_file"      // no key, passphrase, consent or professional entry
	RefusalConsentRevoked      = "consent_revoked"      // the client withdrew consent to clear email
	RefusalConsentExpired      = "consent_expired"      // the client's consent ran out
	RefusalKeyUnusable         = "key_unusable"         // a key, but expired, revoked or unable to encrypt
	RefusalProfessionalRevoked = "professional_revoked" // no longer a professional recipient
	RefusalProfessionalExpired = "professional_expired" // the professional agreement ran out
	RefusalBadAddress          = "bad_address"          // not an address that can be decided on
	RefusalContentRule         = "content_rule"         // a [[policy.rule]] fired on a clear copy
	RefusalTooMuchToCheck      = "too_much_to_check"    // more text than the content rules read
	RefusalMalformed           = "malformed"            // the message's own structure is broken
	RefusalTooLargeToSeal      = "too_large_to_seal"    // over [sealed] max_bytes for a sealed client
	RefusalPassphraseChanged   = "passphrase_changed"   // between RCPT and the end of DATA
	// RefusalPartialSend: another recipient of the message was refused
	// ([policy] partial_sends = "refuse"), so nobody gets it.
	RefusalPartialSend = "partial_send"
)

// refusalReason is what the therapist reads about a refused recipient, and
// its code: the address, what is missing, and what to ask the admin for;
// never an admin's command (those are in AdminFix).
func refusalReason(address string, st ConsentStatus, key KeyLookup, now time.Time) (string, string) {
	others := "no passphrase or encryption key is on file"
	keyBroken := key.Status != "" && key.Status != KeyNone && key.Status != KeyUsable
	if keyBroken {
		others = "no passphrase is on file and their encryption key can no longer be used"
		if key.Detail != "" {
			others += " (" + key.Detail + ")"
		}
	}
	day := func(t time.Time) string { return t.In(now.Location()).Format(dateLayout) }
	switch {
	case st.State == ConsentRevoked && st.Revoked != nil:
		return fmt.Sprintf("<%s> withdrew consent to unencrypted email on %s, and %s; ask your admin how to reach them now",
			address, day(st.Revoked.RecordedAt), others), RefusalConsentRevoked
	case st.State == ConsentExpired && st.Given != nil:
		return fmt.Sprintf("The consent of <%s> to unencrypted email ran out on %s, and %s; ask your admin to record a renewed consent or another way",
			address, st.Given.Expires, others), RefusalConsentExpired
	case st.ProfessionalState == ConsentRevoked && st.Professional != nil:
		return fmt.Sprintf("<%s> is no longer on file as a professional recipient (withdrawn on %s), and %s; ask your admin how to reach them now",
			address, day(st.Professional.RecordedAt), others), RefusalProfessionalRevoked
	case st.ProfessionalState == ConsentExpired && st.Professional != nil:
		return fmt.Sprintf("The professional agreement for <%s> ran out on %s, and %s; ask your admin to renew it",
			address, st.Professional.Expires, others), RefusalProfessionalExpired
	case keyBroken:
		detail := ""
		if key.Detail != "" {
			detail = " (" + key.Detail + ")"
		}
		return fmt.Sprintf("The encryption key of <%s> can no longer be used%s, and no passphrase or written consent to unencrypted email is on file; ask your admin for their current key or another way",
			address, detail), RefusalKeyUnusable
	}
	return fmt.Sprintf("<%s> has no passphrase, encryption key or written consent to unencrypted email on file; ask your admin to record one",
		address), RefusalNothingOnFile
}

// AdminFix says what an admin can do about a refusal with this code, for
// `sealpost refusals show`; address is the recipient when it is known,
// else "ADDRESS". Each line is a sentence or a command.
func AdminFix(code, address string) []string {
	if address == "" {
		address = "ADDRESS"
	}
	ways := []string{
		"Ask the therapist who the recipient is, then record how they may be reached and ask the therapist to send again:",
		"  a client who agreed a passphrase at intake:  sealpost consent passphrase " + address,
		"  a client who signed the consent form for unencrypted email:  sealpost consent add " + address + ` --evidence "FORM, where the signed copy is kept"`,
		"  anyone with an OpenPGP key:  sealpost keys import THEIR-KEY.asc",
		"  another clinician, or a business associate under a BAA:  sealpost consent add " + address + ` --kind professional --evidence "BAA signed YYYY-MM-DD"` +
			" (or --domain DOMAIN for their whole domain)",
	}
	switch code {
	case RefusalNothingOnFile, RefusalBadAddress:
		return ways
	case RefusalConsentRevoked:
		return append([]string{"The client withdrew consent to unencrypted email (sealpost consent list --all shows when and why).",
			"Do not record a new consent unless the client signs one again; a passphrase or their key lets mail reach them encrypted."}, ways...)
	case RefusalConsentExpired:
		return append([]string{"The client's consent to unencrypted email ran out (sealpost consent list --all). If they sign again, record the new form."}, ways...)
	case RefusalKeyUnusable:
		return append([]string{"The recipient's OpenPGP key expired, was revoked or cannot encrypt (sealpost keys list). Ask them for their current key."}, ways...)
	case RefusalProfessionalRevoked, RefusalProfessionalExpired:
		return append([]string{"The recipient is no longer on file as a professional (sealpost consent list --kind professional --all).",
			"Record a current agreement only if there is one (a signed BAA, a referral); otherwise one of the other ways."}, ways...)
	case RefusalContentRule:
		return []string{"A content rule ([[policy.rule]] in sealpost.toml) found what may not go out in unencrypted email.",
			"Nothing needs fixing: the therapist should take it out, or send to a recipient with a key or a passphrase."}
	case RefusalTooMuchToCheck:
		return []string{"The message held more text than the content rules can read, so it could not go out in clear. It can go encrypted or sealed."}
	case RefusalMalformed:
		return []string{"The message's own structure was damaged (as the therapist's mail program wrote it). If it happens again, write the message anew; report the mail program if it keeps happening."}
	case RefusalTooLargeToSeal:
		return []string{"The message was larger than [sealed] max_bytes for a client who gets sealed PDFs. Ask the therapist to send the attachments in separate messages, or raise max_bytes."}
	case RefusalPassphraseChanged:
		return []string{"The client's passphrase was set, replaced or removed while the message was being sent. The therapist can simply send it again."}
	case RefusalPartialSend:
		return append([]string{"Another recipient of the message was refused, so nobody got it ([policy] partial_sends = \"refuse\"). Fix that recipient (the references in the refusal name them):"}, ways[1:]...)
	}
	return ways
}
