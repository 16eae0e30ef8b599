package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyExpecting: records cut off the end of the segment being
// written leave a chain that verifies on its own (nothing seals them yet);
// a chain head kept from an earlier export shows it, as it shows a record
// that is no longer the one seen.
func TestVerifyExpecting(t *testing.T) {
	f := archiveWithRecords(t)
	rep, err := verify(f.dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	head := ChainPoint{Seq: rep.HeadSeq, Hash: rep.Head}
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		expect []ChainPoint
		want   string // "" passes
	}{
		{"untouched", func(*testing.T, string) {}, []ChainPoint{head}, ""},
		{"the newest records cut off", func(t *testing.T, dir string) {
			segs, _ := listSegments(dir)
			p := filepath.Join(dir, segs[len(segs)-1])
			rs := records(t, p)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:rs[len(rs)-2][0]], 0o600)
		}, []ChainPoint{head}, "beyond the chain head"},
		{"a record that is not the one seen", func(*testing.T, string) {}, []ChainPoint{{Seq: head.Seq - 1, Hash: head.Hash}}, "is not the record seen earlier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, f.dir)
			tt.mutate(t, dir)
			_, err := VerifyWith(dir, nil, VerifyOptions{Expect: tt.expect})
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("verify: %v; want a problem saying %q", err, tt.want)
			}
			if tt.name == "the newest records cut off" {
				if _, err := verify(dir, nil); err != nil {
					t.Fatalf("without the earlier head the cut is not visible, yet verify failed: %v", err)
				}
			}
		})
	}
}

// TestTamper: every way of changing the record is found, and the report
// names the place.
func TestTamper(t *testing.T) {
	f := archiveWithRecords(t)
	other := archiveWithRecords(t)
	seg2 := "seg-00000002.log"
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		want   string
	}{
		{"flip a byte in a payload", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			r := records(t, p)[1]
			b[r[1]-40] ^= 1
			os.WriteFile(p, b, 0o600)
		}, "seg-00000002.log: record 8 (at byte"},
		{"flip a byte in a header", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			r := records(t, p)[1]
			i := bytes.Index(b[r[0]:], []byte(`"kind":"message"`))
			b[r[0]+int64(i)+9] = 'M'
			os.WriteFile(p, b, 0o600)
		}, "seg-00000002.log: record 8 (at byte"},
		{"drop a record", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			r := records(t, p)[1]
			os.WriteFile(p, append(b[:r[0]:r[0]], b[r[1]:]...), 0o600)
		}, "seg-00000002.log: record 9 follows record 7"},
		{"swap two records", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			rs := records(t, p)
			a, c := b[rs[1][0]:rs[1][1]], b[rs[2][0]:rs[2][1]]
			var nb []byte
			nb = append(nb, b[:rs[1][0]]...)
			nb = append(nb, c...)
			nb = append(nb, a...)
			nb = append(nb, b[rs[2][1]:]...)
			os.WriteFile(p, nb, 0o600)
		}, "seg-00000002.log: record 9 follows record 7"},
		{"truncate a sealed segment", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-100], 0o600)
		}, "seg-00000002.log: truncated"},
		{"cut a sealed segment at a record boundary", func(t *testing.T, dir string) {
			p := filepath.Join(dir, seg2)
			b, _ := os.ReadFile(p)
			rs := records(t, p)
			os.WriteFile(p, b[:rs[len(rs)-1][0]], 0o600)
		}, "seg-00000002.log: a closed segment without its seal"},
		{"replace a whole segment", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(other.dir, seg2))
			os.WriteFile(filepath.Join(dir, seg2), b, 0o600)
		}, "seg-00000002.log"},
		{"remove a segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, seg2))
		}, "segment seg-00000002.log is missing"},
		{"remove the first segment", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "seg-00000001.log"))
		}, "no prune record accounts for them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, f.dir)
			if _, err := verify(dir, nil); err != nil {
				t.Fatalf("the untouched copy does not verify: %v", err)
			}
			tt.mutate(t, dir)
			var out bytes.Buffer
			_, err := verify(dir, &out)
			if !errors.Is(err, errDamaged) {
				t.Fatalf("verify passed after the change:\n%s", out.String())
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("the report does not name %q:\n%s", tt.want, out.String())
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	a := fx.open(f, 0)
	m, body := testMessage(1, "anna@client.example")
	a.RecordMessage(context.Background(), m, strings.NewReader(body))
	a.Close()
	seg, _ := os.ReadFile(filepath.Join(fx.dir, "seg-00000001.log"))
	f.Add(seg)
	f.Add(seg[:len(seg)/2])
	f.Add([]byte("SPR1\x00\x00\x00\x02{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "seal.pub"), mustRead(fx.dir, "seal.pub"), 0o600)
		os.WriteFile(filepath.Join(dir, "seg-00000001.log"), data, 0o600)
		verify(dir, io.Discard)
		walk(dir, func(located) {})
		// What the index is built from: never a panic, only whole records.
		walkRows(context.Background(), dir, "", 0, 2, func(rows []indexRow) error {
			for _, r := range rows {
				if r.end <= r.off || r.end > int64(len(data)) {
					t.Fatalf("a record from byte %d to %d in %d bytes", r.off, r.end, len(data))
				}
			}
			return nil
		})
	})
}

// BenchmarkVerify: verify reads and hashes everything (goal ≥ 200 MB/s).
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	a := f.open(b, 16<<20)
	body := strings.Repeat("y", 256<<10)
	for i := 0; i < 200; i++ {
		m, head := testMessage(i, "anna@client.example")
		a.RecordMessage(context.Background(), m, strings.NewReader(head+body))
	}
	a.Close()
	var size int64
	segs, _ := filepath.Glob(filepath.Join(f.dir, "seg-*"))
	for _, s := range segs {
		fi, _ := os.Stat(s)
		size += fi.Size()
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := verify(f.dir, nil); err != nil {
			b.Fatal(err)
		}
	}
}
