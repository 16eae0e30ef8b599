package sealed

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf16"

	"github.com/pdfcpu/pdfcpu/pkg/api"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/model"
	"github.com/pdfcpu/pdfcpu/pkg/pdfcpu/types"
)

func init() {
	// pdfcpu would otherwise make ~/.config/pdfcpu (its settings and a
	// font folder) for the user the relay runs as.
	api.DisableConfigDir()
}

// errNotSealed: pdfcpu wrote the PDF without the security handler asked
// for. It does so silently in some cases (a document below PDF 2.0 gets
// revision 5; api.Create ignores encryption), so the outcome is checked.
var errNotSealed = errors.New("sealed: the PDF was not written with AES-256, security handler revision 6")

// pdfDoc is one PDF to write: its pages' content streams, the glyphs they
// use, and the files it embeds (message.eml, message.txt, then the
// attachments).
type pdfDoc struct {
	font    *pageFont
	pages   [][]byte // compressed
	footers [][]byte // each page's number, a second content stream
	used    []bool
	files   []file
}

// writeSealed writes doc to w as a PDF 2.0 file encrypted with the
// standard security handler, revision 6 (AES-256): the user password is
// the (prepared) passphrase, the owner password random. It has no Info
// dictionary and no XMP metadata; file names are strings inside the
// encrypted objects.
func writeSealed(w io.Writer, doc *pdfDoc, passphrase string, keys *keyCache) error {
	xt, err := pdfcpu.CreateXRefTableWithRootDict()
	if err != nil {
		return fmt.Errorf("sealed: new PDF: %w", err)
	}
	v := model.V20 // pdfcpu chooses revision 6 only for PDF 2.0
	xt.HeaderVersion = &v
	if err := addPages(xt, doc); err != nil {
		return err
	}
	conf := model.NewAESConfiguration(passphrase, randomOwnerPassword(), 256)
	conf.ValidationMode = model.ValidationRelaxed
	conf.Optimize, conf.OptimizeBeforeWriting, conf.OptimizeResourceDicts = false, false, false
	conf.OptimizeDuplicateContentStreams = false
	conf.WriteObjectStream, conf.WriteXRefStream = false, false
	conf.Permissions = model.PermissionsAll
	conf.Cmd = model.ENCRYPT
	ctx := pdfcpu.CreateContext(xt, conf)
	ctx.Read = &model.ReadContext{}             // dereferenced when encrypting
	ctx.Optimize = &model.OptimizationContext{} // and when logging what was written
	if err := embedFiles(xt, doc.files); err != nil {
		return err
	}
	cached, err := keys.apply(ctx, passphrase)
	if err != nil {
		return err
	}
	if err := api.WriteContext(ctx, w); err != nil {
		return fmt.Errorf("sealed: write the PDF: %w", err)
	}
	if ctx.E == nil || ctx.E.R != 6 || ctx.EncKey == nil || !ctx.AES4Streams || !ctx.AES4Strings {
		return errNotSealed
	}
	if !cached {
		return keys.store(ctx, passphrase)
	}
	return nil
}

// randomOwnerPassword: nobody is to have the owner password, so it is 32
// random bytes nobody keeps.
func randomOwnerPassword() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24 and later)
	return base64.RawURLEncoding.EncodeToString(b)
}

// addPages adds the font, the page tree and the pages.
func addPages(xt *model.XRefTable, doc *pdfDoc) error {
	root, err := xt.Catalog()
	if err != nil {
		return fmt.Errorf("sealed: PDF catalog: %w", err)
	}
	fontRef, err := addFont(xt, doc.font, doc.used)
	if err != nil {
		return err
	}
	fonts := types.Dict{"F1": *fontRef}
	pagesDict := types.Dict{
		"Type": types.Name("Pages"), "Count": types.Integer(len(doc.pages)),
		"MediaBox": types.Array{types.Integer(0), types.Integer(0), types.Float(pageW), types.Float(pageH)},
	}
	pagesRef, err := xt.IndRefForNewObject(pagesDict)
	if err != nil {
		return fmt.Errorf("sealed: PDF page tree: %w", err)
	}
	kids := make(types.Array, 0, len(doc.pages))
	for i, content := range doc.pages {
		c, err := streamObject(xt, content, types.Dict{"Filter": types.Name("FlateDecode")})
		if err != nil {
			return err
		}
		footer, err := streamObject(xt, doc.footers[i], types.Dict{})
		if err != nil {
			return err
		}
		p, err := xt.IndRefForNewObject(types.Dict{
			"Type": types.Name("Page"), "Parent": *pagesRef, "Contents": types.Array{*c, *footer},
			"Resources": types.Dict{"Font": fonts.Clone()},
		})
		if err != nil {
			return fmt.Errorf("sealed: PDF page: %w", err)
		}
		kids = append(kids, *p)
	}
	pagesDict["Kids"] = kids
	root.Insert("Pages", *pagesRef)
	xt.PageCount = len(doc.pages)
	return nil
}

// streamObject adds a stream whose bytes are raw as they are.
func streamObject(xt *model.XRefTable, raw []byte, d types.Dict) (*types.IndirectRef, error) {
	sd := types.StreamDict{Dict: d, Raw: raw}
	n := int64(len(raw))
	sd.StreamLength = &n
	sd.InsertInt("Length", len(raw))
	ref, err := xt.IndRefForNewObject(sd)
	if err != nil {
		return nil, fmt.Errorf("sealed: PDF stream: %w", err)
	}
	return ref, nil
}

// addFont adds the Type0 font with the widths of the glyphs used.
func addFont(xt *model.XRefTable, f *pageFont, used []bool) (*types.IndirectRef, error) {
	program, err := streamObject(xt, f.fontFile, types.Dict{"Filter": types.Name("FlateDecode"), "Length1": types.Integer(f.length1)})
	if err != nil {
		return nil, err
	}
	descriptor, err := xt.IndRefForNewObject(types.Dict{
		"Type": types.Name("FontDescriptor"), "FontName": types.Name(f.psName),
		"Flags": types.Integer(32), "ItalicAngle": types.Integer(0),
		"FontBBox": types.Array{types.Integer(f.bbox[0]), types.Integer(f.bbox[1]), types.Integer(f.bbox[2]), types.Integer(f.bbox[3])},
		"Ascent":   types.Integer(f.ascent), "Descent": types.Integer(f.descent),
		"CapHeight": types.Integer(f.capHeight), "StemV": types.Integer(80),
		"FontFile2": *program,
	})
	if err != nil {
		return nil, fmt.Errorf("sealed: PDF font: %w", err)
	}
	cid, err := xt.IndRefForNewObject(types.Dict{
		"Type": types.Name("Font"), "Subtype": types.Name("CIDFontType2"),
		"BaseFont": types.Name(f.psName),
		"CIDSystemInfo": types.Dict{"Registry": types.StringLiteral("Adobe"),
			"Ordering": types.StringLiteral("Identity"), "Supplement": types.Integer(0)},
		"FontDescriptor": *descriptor, "CIDToGIDMap": types.Name("Identity"),
		"W": widths(f, used),
	})
	if err != nil {
		return nil, fmt.Errorf("sealed: PDF font: %w", err)
	}
	toUnicode, err := streamObject(xt, f.toUnicode, types.Dict{"Filter": types.Name("FlateDecode")})
	if err != nil {
		return nil, err
	}
	ref, err := xt.IndRefForNewObject(types.Dict{
		"Type": types.Name("Font"), "Subtype": types.Name("Type0"),
		"BaseFont": types.Name(f.psName), "Encoding": types.Name("Identity-H"),
		"DescendantFonts": types.Array{*cid}, "ToUnicode": *toUnicode,
	})
	if err != nil {
		return nil, fmt.Errorf("sealed: PDF font: %w", err)
	}
	return ref, nil
}

// widths is the W array of the glyphs used: [first [w w ...] ...].
func widths(f *pageFont, used []bool) types.Array {
	var a types.Array
	for g := 0; g < len(used); {
		if !used[g] {
			g++
			continue
		}
		start := g
		var ws types.Array
		for g < len(used) && used[g] {
			ws = append(ws, types.Integer(f.adv[g]))
			g++
		}
		a = append(a, types.Integer(start), ws)
	}
	return a
}

// embedFiles adds the files to the document's EmbeddedFiles name tree,
// each under a name no other has: the sender's files stored as they are
// (only encrypted, never recompressed), message.txt compressed.
func embedFiles(xt *model.XRefTable, files []file) error {
	if err := xt.LocateNameTree("EmbeddedFiles", true); err != nil {
		return fmt.Errorf("sealed: PDF attachments: %w", err)
	}
	for i, name := range uniqueNames(files) {
		data := files[i].data
		sd := types.StreamDict{Dict: types.NewDict(), Raw: data}
		n := int64(len(data))
		sd.StreamLength = &n
		sd.InsertName("Type", "EmbeddedFile")
		sd.InsertInt("Length", len(data))
		if files[i].deflated {
			sd.InsertName("Filter", "FlateDecode")
		}
		params := types.NewDict()
		params.InsertInt("Size", files[i].size())
		sd.Insert("Params", params)
		ref, err := xt.IndRefForNewObject(sd)
		if err != nil {
			return fmt.Errorf("sealed: PDF attachment: %w", err)
		}
		spec, err := xt.NewFileSpecDict(name, name, "", *ref)
		if err != nil {
			return fmt.Errorf("sealed: PDF attachment: %w", err)
		}
		spec.Delete("CI")
		specRef, err := xt.IndRefForNewObject(spec)
		if err != nil {
			return fmt.Errorf("sealed: PDF attachment: %w", err)
		}
		key := textStringKey(name)
		if err := xt.Names["EmbeddedFiles"].Add(xt, key, *specRef, model.NameMap{key: {spec}}, []string{"F", "UF"}); err != nil {
			return fmt.Errorf("sealed: PDF attachment: %w", err)
		}
	}
	return nil
}

// textStringKey is a name-tree key as a PDF text string: pdfcpu writes
// keys as the bytes given, and readers decode them as PDFDocEncoding unless
// they are UTF-16BE with a byte order mark.
func textStringKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	b := make([]byte, 2, 2+2*len(s))
	b[0], b[1] = 0xfe, 0xff
	for _, u := range utf16.Encode([]rune(s)) {
		b = append(b, byte(u>>8), byte(u))
	}
	return string(b)
}

// uniqueNames are the files' names as saved: safe for a file system, and
// one "name (2).ext" where two are the same to a case-blind one.
func uniqueNames(files []file) []string {
	seen := make(map[string]bool, len(files))
	out := make([]string, len(files))
	for i, f := range files {
		n := safeFileName(f.name)
		c := n
		for k := 2; seen[strings.ToLower(c)]; k++ {
			ext := path.Ext(n)
			c = fmt.Sprintf("%s (%d)%s", strings.TrimSuffix(n, ext), k, ext)
		}
		seen[strings.ToLower(c)] = true
		out[i] = c
	}
	return out
}
