package queue

import (
	"os"
	"sync"
	"testing"

	"github.com/sealpost/sealpost/internal/fsutil"
	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules"
)

// TestEntryRemove: removing a message takes its file away before its
// state (a message without its state would go to every recipient again),
// and the folder is fsynced after, so a crash cannot bring it back.
func TestEntryRemove(t *testing.T) {
	tests := []struct {
		name string
		// setup makes the spool misbehave or watches it; check runs after
		// remove returned err.
		setup func(t *testing.T, s *spool, e *entry) (check func(err error))
	}{
		{"the message goes before its state", func(t *testing.T, s *spool, e *entry) func(error) {
			// Setting the file aside fails: a file where the folder was.
			if err := os.RemoveAll(s.fdir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(s.fdir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return func(err error) {
				if err == nil {
					t.Fatal("remove succeeded though the file could not be set aside")
				}
				if _, err := os.Stat(e.path); err != nil {
					t.Fatalf("the message is gone: %v", err)
				}
				st, err := loadEntry(e.path)
				if err != nil || st.state.Attempts != 1 {
					t.Errorf("the message lost its state (%v): its recipients would get it again", err)
				}
			}
		}},
		{"the folder is synced after", func(t *testing.T, s *spool, e *entry) func(error) {
			var mu sync.Mutex
			syncedWithout := false
			s.dirSync.Fsync = func(dir string) error {
				_, err := os.Stat(e.path)
				mu.Lock()
				syncedWithout = syncedWithout || (dir == s.qdir && os.IsNotExist(err))
				mu.Unlock()
				return fsutil.SyncDir(dir)
			}
			return func(err error) {
				if err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if !syncedWithout {
					t.Error("the queue folder was not fsynced after the message left it")
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := openSpool(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			e := spoolMessage(t, s, rules.Copy{Name: "plain", Recipients: []string{"a@client.example"}, Protection: record.Encrypted})
			e.state.Attempts = 1
			if err := e.saveState(); err != nil {
				t.Fatal(err)
			}
			check := tt.setup(t, s, e)
			check(e.remove())
		})
	}
}
