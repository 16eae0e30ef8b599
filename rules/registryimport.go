package rules

import (
	"context"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sealpost/sealpost/record"
	"github.com/sealpost/sealpost/rules/sealed"
)

// importRow is one line of a consent import: a consent, a passphrase, or both.
type importRow struct {
	line       int
	given      *record.ConsentEvent
	passphrase *record.ConsentEvent
	prepared   string
}

// Import reads consents from CSV with the header row
// address,name,signed,evidence,expires and an optional passphrase column
// (a client's passphrase for sealed PDFs). A row with a passphrase and no
// signing date or evidence records only the passphrase. Every bad row is
// reported with its line number, and then nothing of the file is
// recorded; a passphrase is never repeated in a problem.
func (r *Registry) Import(ctx context.Context, in io.Reader, recordedBy string) (int, error) {
	now := time.Now()
	cr := csv.NewReader(in)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return 0, fmt.Errorf("line 1: %w", err)
	}
	want := []string{"address", "name", "signed", "evidence", "expires"}
	col := map[string]int{}
	for i, h := range header {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	var problems []string
	for _, w := range want {
		if _, ok := col[w]; !ok {
			problems = append(problems, fmt.Sprintf("line 1: the header row lacks the column %q (expected %s[,passphrase])", w, strings.Join(want, ",")))
		}
	}
	if len(problems) > 0 {
		return 0, &ValidationError{Problems: problems}
	}
	var rows []importRow
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			problems = append(problems, csvProblem(err))
			continue
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		row, ps := importLine(rec, col, line, recordedBy, now)
		problems = append(problems, ps...)
		if a := row.address(); a != "" {
			if prev, dup := seen[a]; dup {
				problems = append(problems, fmt.Sprintf("line %d: %s is already on line %d", line, a, prev))
			}
			seen[a] = line
		}
		rows = append(rows, row)
	}
	if len(problems) > 0 {
		return 0, &ValidationError{Problems: append(problems, "nothing was imported")}
	}
	if err := r.importRows(ctx, rows, now); err != nil {
		return 0, err
	}
	return len(rows), nil
}

// csvProblem is a CSV reader's error, with its line, without the text of
// the field it stopped in, which may be a passphrase.
func csvProblem(err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Sprintf("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
	}
	return "a line cannot be read as CSV"
}

// importLine reads one record of the file.
func importLine(rec []string, col map[string]int, line int, recordedBy string, now time.Time) (importRow, []string) {
	get := func(k string) string {
		if i, ok := col[k]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	row := importRow{line: line}
	var problems []string
	given := record.ConsentEvent{Kind: record.ConsentGiven, Client: get("name"), Addresses: []string{get("address")}, Signed: get("signed"),
		Evidence: get("evidence"), Expires: get("expires"), RecordedBy: recordedBy}
	p := get("passphrase")
	if p == "" || given.Signed != "" || given.Evidence != "" || given.Expires != "" {
		for _, msg := range checkGiven(&given, now) {
			problems = append(problems, fmt.Sprintf("line %d: %s", line, msg))
		}
		row.given = &given
	}
	if p != "" {
		ns, ps := normalizeAll([]string{get("address")})
		if row.given == nil { // else checkGiven named the address's problems
			for _, msg := range ps {
				problems = append(problems, fmt.Sprintf("line %d: %s", line, msg))
			}
		}
		prepared, err := sealed.CheckPassphrase(p)
		if err != nil {
			msg := err.Error()
			if strings.Contains(msg, p) {
				msg = "not accepted"
			}
			problems = append(problems, fmt.Sprintf("line %d: passphrase: %s", line, msg))
		}
		row.prepared = prepared
		row.passphrase = &record.ConsentEvent{Kind: record.PassphraseSet, Client: get("name"), Addresses: ns, RecordedBy: recordedBy}
	}
	return row, problems
}

// address is the row's address, normalised ("" when it is not one).
func (row importRow) address() string {
	for _, ev := range []*record.ConsentEvent{row.given, row.passphrase} {
		if ev != nil && len(ev.Addresses) == 1 {
			return ev.Addresses[0]
		}
	}
	return ""
}

// importRows records every row in one transaction.
func (r *Registry) importRows(ctx context.Context, rows []importRow, now time.Time) error {
	var key []byte
	for _, row := range rows {
		if row.passphrase != nil {
			var err error
			if key, err = r.keyForNewSecrets(ctx); err != nil {
				return fmt.Errorf("consent registry: %w", err)
			}
			break
		}
	}
	return r.inTx(ctx, func(tx *sql.Tx) error {
		for _, row := range rows {
			if row.given != nil {
				if err := insertEvent(ctx, tx, row.given, now); err != nil {
					return err
				}
			}
			if row.passphrase != nil {
				if err := setPassphraseTx(ctx, tx, key, row.passphrase, row.prepared, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
