package servicetags

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ErrFormat is wrapped by every error about the content of a file (as
// opposed to reading it).
var ErrFormat = errors.New("not a service tags file")

// maxFileSize bounds what Load reads: the public file is about 5 MB, the
// discovery API's answer a little more.
const maxFileSize = 64 << 20

// File is one service tags document.
type File struct {
	// Path is where it was read from ("" when parsed from bytes without one).
	Path string
	// ChangeNumber is the document's version; it grows with every weekly
	// publication. The download has an integer, the discovery API a string.
	ChangeNumber int64
	// Cloud is "Public", "AzureGovernment", "AzureChinaCloud", ...
	Cloud string
	// Tags in the file's order.
	Tags []Tag
}

// Tag is one entry of values[].
type Tag struct {
	Name          string
	ID            string
	ChangeNumber  int64
	Region        string // "" for a tag that spans every region
	RegionID      int
	Platform      string
	SystemService string
	Prefixes      []netip.Prefix // masked; v4 and v6 mixed as in the file
	// NetworkFeatures is nil when the file has null or leaves it out.
	NetworkFeatures []string
}

// Addresses is how many addresses the tag's prefixes hold together
// (overlaps counted once), saturating at the largest uint64.
func (t *Tag) Addresses() uint64 { return CountAddresses(t.Prefixes) }

// Tag returns the tag with that name (case-insensitive, as Azure treats
// tag names), or nil.
func (f *File) Tag(name string) *Tag {
	for i := range f.Tags {
		if strings.EqualFold(f.Tags[i].Name, name) {
			return &f.Tags[i]
		}
	}
	return nil
}

// Load reads and parses a file.
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("service tags: %w", err)
	}
	defer fh.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(fh, maxFileSize+1)); err != nil {
		return nil, fmt.Errorf("service tags: read %s: %w", path, err)
	}
	if buf.Len() > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d MB: %w", path, maxFileSize>>20, ErrFormat)
	}
	return Parse(path, buf.Bytes())
}

// wire types: every field that differs between the two sources, or that
// must be checked element by element, is raw.
type wireFile struct {
	ChangeNumber json.RawMessage   `json:"changeNumber"`
	Cloud        string            `json:"cloud"`
	Values       []json.RawMessage `json:"values"`
}

type wireTag struct {
	Name       string          `json:"name"`
	ID         string          `json:"id"`
	Properties json.RawMessage `json:"properties"`
}

type wireProps struct {
	ChangeNumber    json.RawMessage   `json:"changeNumber"`
	Region          string            `json:"region"`
	RegionID        int               `json:"regionId"`
	Platform        string            `json:"platform"`
	SystemService   string            `json:"systemService"`
	AddressPrefixes []json.RawMessage `json:"addressPrefixes"`
	NetworkFeatures []string          `json:"networkFeatures"`
}

// Parse parses a document; name is used in errors (usually the path).
// Errors name the JSON path of the offending value, e.g.
// "tags.json: values[12].properties.addressPrefixes[3]: "10.0.0.0/33" is
// not a prefix".
func Parse(name string, data []byte) (*File, error) {
	fail := func(path string, format string, args ...any) error {
		where := name
		if path != "" {
			where += ": " + path
		}
		return fmt.Errorf("%s: %s: %w", where, fmt.Sprintf(format, args...), ErrFormat)
	}
	var w wireFile
	if err := decode(data, &w); err != nil {
		return nil, fail("", "%s", jsonError(data, err, ""))
	}
	if w.Values == nil {
		return nil, fail("", "no \"values\" array")
	}
	f := &File{Path: name, Cloud: w.Cloud, Tags: make([]Tag, 0, len(w.Values))}
	var err error
	if f.ChangeNumber, err = changeNumber(w.ChangeNumber); err != nil {
		return nil, fail("changeNumber", "%v", err)
	}
	for i, raw := range w.Values {
		at := fmt.Sprintf("values[%d]", i)
		var wt wireTag
		if err := decode(raw, &wt); err != nil {
			return nil, fail("", "%s", jsonError(raw, err, at))
		}
		if wt.Name == "" {
			return nil, fail(at+".name", "missing or empty")
		}
		t := Tag{Name: wt.Name, ID: wt.ID}
		if wt.Properties == nil || string(wt.Properties) == "null" {
			return nil, fail(at+".properties", "missing (tag %q)", wt.Name)
		}
		at += ".properties"
		var p wireProps
		if err := decode(wt.Properties, &p); err != nil {
			return nil, fail("", "%s", jsonError(wt.Properties, err, at))
		}
		if t.ChangeNumber, err = changeNumber(p.ChangeNumber); err != nil {
			return nil, fail(at+".changeNumber", "%v", err)
		}
		t.Region, t.RegionID, t.Platform, t.SystemService = p.Region, p.RegionID, p.Platform, p.SystemService
		t.NetworkFeatures = p.NetworkFeatures
		t.Prefixes = make([]netip.Prefix, 0, len(p.AddressPrefixes))
		for j, rp := range p.AddressPrefixes {
			var s string
			if err := json.Unmarshal(rp, &s); err != nil {
				return nil, fail(fmt.Sprintf("%s.addressPrefixes[%d]", at, j), "%s is not a string", clip(rp))
			}
			pfx, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fail(fmt.Sprintf("%s.addressPrefixes[%d]", at, j), "%q is not a prefix", s)
			}
			t.Prefixes = append(t.Prefixes, pfx.Masked())
		}
		f.Tags = append(f.Tags, t)
	}
	return f, nil
}

// decode is json.Unmarshal; kept in one place so that both sources are
// decoded alike (unknown fields such as the API's "state" are ignored).
func decode(data []byte, v any) error { return json.Unmarshal(data, v) }

// changeNumber accepts 42, "42" and a missing value (0).
func changeNumber(raw json.RawMessage) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err == nil {
		return n, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return n, nil
		}
		return 0, fmt.Errorf("%q is not a number", s)
	}
	return 0, fmt.Errorf("%s is neither a number nor a string of one", clip(raw))
}

// jsonError turns encoding/json's errors into a sentence with a JSON path
// (for a value of the wrong type) or a line and column (for broken syntax).
func jsonError(data []byte, err error, at string) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if at != "" && field != "" {
			field = at + "." + field
		} else if at != "" {
			field = at
		}
		return fmt.Sprintf("%s: a JSON %s where %s belongs", field, te.Value, goTypeName(te.Type.String()))
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		if se.Offset >= int64(len(data)) {
			return "the JSON ends too early (a truncated download?)"
		}
		line, col := lineCol(data, se.Offset)
		return fmt.Sprintf("line %d, column %d: %v", line, col, se)
	}
	return err.Error()
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"):
		return "a number"
	case strings.HasPrefix(t, "struct"), strings.HasPrefix(t, "servicetags."):
		return "an object"
	}
	return t
}

func lineCol(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - bytes.LastIndexByte(before, '\n')
	return line, col
}

func clip(raw json.RawMessage) string {
	s := string(raw)
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}
