package archive

import (
	"fmt"
	"os"
	"path/filepath"
)

// AddressHasher returns the keyed hash the archive in dir keeps addresses
// as (the clear headers' addrs): whoever knows many addresses hashes each
// once and looks a record's hash up, rather than asking Is of every
// address for every record.
func AddressHasher(dir string) (func(address string) string, error) {
	key, err := os.ReadFile(filepath.Join(dir, "address-hash.key"))
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return func(address string) string { return addrHash(key, address) }, nil
}

// AddressHash is the refused recipient's keyed hash ("" for a whole
// message), as AddressHasher makes it.
func (r RefusalFound) AddressHash() string { return r.addrHash }
