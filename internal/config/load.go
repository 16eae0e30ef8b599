package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Load reads and checks a configuration file. On failure the error is
// Errors, listing every problem with its key and line, or an I/O error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	cfg := defaults()
	cfg.Path = abs
	cfg.lines, err = keyLines(data)
	if err != nil {
		ce := err.(Error)
		ce.File = path
		return nil, Errors{ce}
	}
	dec := toml.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var es Errors
	if err := dec.Decode(&cfg); err != nil {
		var strict *toml.StrictMissingError
		var derr *toml.DecodeError
		switch {
		case errors.As(err, &strict):
			// The known keys were decoded: report the unknown ones together
			// with whatever else is wrong.
			for _, e := range strict.Errors {
				line, _ := e.Position()
				es = append(es, Error{File: path, Line: line, Key: strings.Join(e.Key(), "."), Msg: "unknown key (misspelt, or in the wrong [section]?)"})
			}
		case errors.As(err, &derr):
			line, _ := derr.Position()
			return nil, Errors{{File: path, Line: line, Key: strings.Join(derr.Key(), "."), Msg: derr.Error()}}
		default:
			return nil, Errors{{File: path, Msg: err.Error()}}
		}
	}
	es = append(es, cfg.validate(path)...)
	if len(es) > 0 {
		sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
		return nil, es
	}
	cfg.resolvePaths()
	return &cfg, nil
}

// keyLines maps every key path in the document ("smtp.submission",
// "account[1].addresses") to the line it is on, so that problems found after
// decoding can still name their line.
func keyLines(data []byte) (map[string]int, error) {
	lines := map[string]int{}
	arrayCount := map[string]int{}
	var p unstable.Parser
	p.Reset(data)
	prefix := ""
	keyOf := func(n *unstable.Node) string {
		var parts []string
		it := n.Key()
		for it.Next() {
			parts = append(parts, string(it.Node().Data))
		}
		return strings.Join(parts, ".")
	}
	lineOf := func(n *unstable.Node) int {
		it := n.Key()
		if it.Next() {
			return p.Shape(it.Node().Raw).Start.Line
		}
		return 0
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			prefix = keyOf(e)
			lines[prefix] = lineOf(e)
		case unstable.ArrayTable:
			k := keyOf(e)
			prefix = fmt.Sprintf("%s[%d]", k, arrayCount[k])
			arrayCount[k]++
			lines[prefix] = lineOf(e)
		case unstable.KeyValue:
			k := keyOf(e)
			if prefix != "" {
				k = prefix + "." + k
			}
			lines[k] = lineOf(e)
		}
	}
	if err := p.Error(); err != nil {
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			return nil, Error{Line: p.Shape(p.Range(perr.Highlight)).Start.Line, Msg: "syntax error: " + perr.Message}
		}
		return nil, Error{Msg: "syntax error: " + err.Error()}
	}
	return lines, nil
}

// resolvePaths makes every relative path in the configuration relative to
// the configuration file's folder, so sealpost does the same from any working
// directory (systemd starts it in /).
func (c *Config) resolvePaths() {
	base := filepath.Dir(c.Path)
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	abs(&c.DataDir)
	abs(&c.SMTP.TLSCert)
	abs(&c.SMTP.TLSKey)
	abs(&c.Upstream.CAFile)
	abs(&c.PGP.PracticeKey)
	abs(&c.PGP.PracticeKeyPassphraseFile)
	abs(&c.Archive.PublicKey)
	abs(&c.OAuth2.ClientSecretFile)
	abs(&c.Store.PasswordFile)
	abs(&c.Store.CAFile)
	if c.Archive.S3 != nil {
		c.Archive.S3.resolve(base)
	}
	for i := range c.Accounts {
		abs(&c.Accounts[i].UpstreamPasswordFile)
		if m := c.Accounts[i].IMAP; m != nil {
			abs(&m.CAFile)
			abs(&m.PasswordFile)
		}
	}
}

// Error is one problem in the configuration, with where it is.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration file.
type Errors []Error

func (es Errors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return fmt.Sprintf("%d problems in the configuration:\n  %s", len(es), strings.Join(parts, "\n  "))
}
