package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
	"golang.org/x/term"

	"github.com/sealpost/sealpost/rules/pgp"
)

func init() {
	register(&command{name: "keys export-practice", args: "--out FILE",
		summary: "write the practice's private key, protected by a passphrase you choose, for a therapist's Thunderbird to read clients' encrypted replies", run: runKeysExportPractice})
}

// minExportPassphrase: the file may travel on a USB stick; its
// passphrase is all that protects the practice key in it.
const minExportPassphrase = 12

// runKeysExportPractice writes [pgp] practice_key, with its private parts
// encrypted under a new passphrase (iterated and salted SHA-256, the most
// iterations OpenPGP can say, AES-256: what GnuPG and Thunderbird's RNP
// read), to a new file only the invoking admin can read. Clients whose mail
// programs learnt the practice key from the Autocrypt header encrypt their
// replies to it: a therapist's Thunderbird needs it to read them.
func runKeysExportPractice(ctx context.Context, c *cli, args []string) error {
	fs := c.flags()
	out := fs.String("out", "", "the file to write (it must not exist yet)")
	_, cfg, err := c.start(fs, args, noArgs, func() error {
		if *out == "" {
			return usagef("--out FILE is required")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if cfg.PGP.PracticeKey == "" {
		return errors.New("no [pgp] practice_key in the configuration: there is no practice key to export")
	}
	keepSecretsOutOfDumps()
	key, err := pgp.LoadPracticeKey(cfg.PGP.PracticeKey, cfg.PGP.PracticeKeyPassphraseFile)
	if err != nil {
		return err
	}
	passphrase, err := c.exportPassphrase()
	if err != nil {
		return err
	}
	config := &packet.Config{DefaultCipher: packet.CipherAES256,
		S2KConfig: &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: 65011712}}
	if err := key.EncryptPrivateKeys([]byte(passphrase), config); err != nil {
		return fmt.Errorf("protect the key: %w", err)
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w (the file must be a new one)", err)
	}
	w, err := armor.Encode(f, "PGP PRIVATE KEY BLOCK", nil)
	if err == nil {
		err = key.SerializePrivateWithoutSigning(w, nil)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*out)
		return fmt.Errorf("write %s: %w", *out, err)
	}
	giveToSudoUser(*out)
	fmt.Fprintf(c.stdout, "Wrote the practice key %s to %s, protected by the passphrase you typed.\n", pgp.Fingerprint(key), *out)
	fmt.Fprintln(c.stdout, "Carry it to the therapist's computer on a USB stick or the practice's file share (never by email), tell them the passphrase in person or by phone, import it in Thunderbird, then delete every copy.")
	return nil
}

// exportPassphrase reads the new passphrase twice from the terminal
// without echo, or one line from stdin.
func (c *cli) exportPassphrase() (string, error) {
	var p string
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fd := int(f.Fd())
		fmt.Fprintf(c.stderr, "A new passphrase for the exported key (at least %d characters; the therapist types it once in Thunderbird): ", minExportPassphrase)
		first, err := term.ReadPassword(fd)
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(c.stderr, "The same passphrase again: ")
		second, err := term.ReadPassword(fd)
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		if string(first) != string(second) {
			return "", errors.New("the two passphrases differ; nothing was written")
		}
		p = string(first)
	} else {
		var err error
		if p, err = readPassphraseLine(c.stdin); err != nil {
			return "", err
		}
	}
	if len([]rune(p)) < minExportPassphrase {
		return "", fmt.Errorf("the passphrase must have at least %d characters: the file's passphrase is all that protects the practice key in it; nothing was written", minExportPassphrase)
	}
	return p, nil
}

// giveToSudoUser hands a file root wrote for an admin who ran sudo to that
// admin, who carries it on.
func giveToSudoUser(path string) {
	if os.Geteuid() != 0 {
		return
	}
	uid, err1 := strconv.Atoi(os.Getenv("SUDO_UID"))
	gid, err2 := strconv.Atoi(os.Getenv("SUDO_GID"))
	if err1 == nil && err2 == nil {
		os.Chown(path, uid, gid)
	}
}
