package ingest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// The one write sealpost makes in a mailbox: a delivery report (a bounce, a
// "still trying" notice, a copy not sent because consent was withdrawn)
// appended to the account's own INBOX, where the therapist sees it. Sent
// by SMTP it would need a From that is not the therapist's (refused by
// Microsoft 365) or a null sender (refused by some providers on
// submission), and the therapist would never learn that a message to a
// client failed.

// AppendReport logs in as a watcher with options o does, and puts report
// into INBOX flagged (\Flagged), unless a message with Message-ID
// messageID is there already: a report made twice (a restart between
// queuing and recording it) is not shown twice.
func AppendReport(ctx context.Context, o Options, messageID string, report []byte) error {
	c, done, err := loggedIn(ctx, o)
	if err != nil {
		return err
	}
	defer done()
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		return fmt.Errorf("examine INBOX: %w", err)
	}
	id := "<" + strings.Trim(messageID, "<>") + ">"
	found, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: id}}}, nil).Wait()
	if err != nil {
		return fmt.Errorf("search INBOX: %w", err)
	}
	if len(found.AllUIDs()) > 0 {
		return c.Logout().Wait()
	}
	cmd := c.Append("INBOX", int64(len(report)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagFlagged}, Time: time.Now()})
	if _, err := cmd.Write(report); err != nil {
		cmd.Close()
		return fmt.Errorf("append to INBOX: %w", err)
	}
	if err := cmd.Close(); err != nil {
		return fmt.Errorf("append to INBOX: %w", err)
	}
	if _, err := cmd.Wait(); err != nil {
		return fmt.Errorf("append to INBOX: %w", err)
	}
	return c.Logout().Wait()
}
