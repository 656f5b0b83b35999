package config

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// yaml.v3 reports a syntax error as text with at most a line, and that
// line is not always the right one: its parser errors count lines from 0
// (its scanner errors from 1), an unclosed bracket or quote is reported at
// the end of the file, and reader errors (control characters, bad UTF-8)
// and unknown anchors have no line at all. No column is ever given. So
// syntaxError asks yaml.v3 itself where the file stops being YAML, by
// parsing prefixes of it: the line is the one from which on no prefix
// parses, the column the character after the longest prefix of that line
// that still parses, and the field the last key of that prefix. No YAML is
// parsed here by hand.

// yamlLine finds "line N" in yaml.v3's messages.
var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// parserProblems are the messages of yaml.v3's parser (parserc.go), whose
// line is counted from 0; all others come from the scanner, counted from 1.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found duplicate %TAG directive":         true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// Bounds of the prefix search: a configuration is a few KiB, so its
// search parses a few hundred prefixes in milliseconds. A bigger file, or
// one whose search parses more than maxSearchWork bytes in all, keeps
// yaml.v3's line and the line's first character.
const (
	maxSearchSize = 64 << 10
	maxSearchWork = 4 << 20
)

// syntaxError places a yaml.v3 syntax error in the file.
func syntaxError(file string, data []byte, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if sm := yamlLine.FindStringSubmatch(msg); sm != nil {
		line, _ = strconv.Atoi(sm[1])
		msg = sm[2]
		if parserProblems[msg] {
			line++
		}
	} else if parserProblems[msg] {
		line = 1 // line 0 counted from 0
	}
	s := newPrefixSearch(data)
	last := s.lastContentLine()
	switch {
	case !s.ok:
	case line == 0:
		// No line: the first line whose end no longer parses.
		line = s.firstFailingLine()
	case line > last || strings.Contains(msg, "end of stream"):
		// An unclosed bracket or quote is reported where the file
		// ends: go back to the line it was opened on.
		line = s.openedAt(min(line, last))
	}
	line = max(1, min(line, len(s.lines)))
	fe := &FieldError{File: file, Line: line, Column: firstNonBlank(s.line(line)), Msg: "YAML syntax: " + msg}
	if l, c, ok := badCharacter(data); ok && readerProblem(msg) {
		// The reader refuses a character before any parsing: its
		// place is exact, whatever prefix still parses.
		fe.Line, fe.Column = l, c
		if s.ok {
			if _, field, ok := s.column(l); ok {
				fe.Field = field
			}
		}
		return fe
	}
	if s.ok {
		if col, field, ok := s.column(line); ok {
			fe.Column, fe.Field = col, field
		}
	}
	return fe
}

type prefixSearch struct {
	data   []byte
	starts []int // byte offset of each line's start
	lines  []string
	work   int  // bytes parsed so far
	ok     bool // small enough to search
}

func newPrefixSearch(data []byte) *prefixSearch {
	s := &prefixSearch{data: data, ok: len(data) <= maxSearchSize}
	off := 0
	for l := range strings.SplitSeq(string(data), "\n") {
		s.starts = append(s.starts, off)
		s.lines = append(s.lines, l)
		off += len(l) + 1
	}
	return s
}

func (s *prefixSearch) line(n int) string {
	if n < 1 || n > len(s.lines) {
		return ""
	}
	return s.lines[n-1]
}

func (s *prefixSearch) lastContentLine() int {
	for n := len(s.lines); n > 0; n-- {
		if strings.TrimSpace(s.lines[n-1]) != "" {
			return n
		}
	}
	return 1
}

// parses reports whether data[:end] is YAML, and its tree.
func (s *prefixSearch) parse(end int) (*yaml.Node, bool) {
	if s.work += end; s.work > maxSearchWork {
		s.ok = false
		return nil, false
	}
	var n yaml.Node
	if err := yaml.Unmarshal(s.data[:min(end, len(s.data))], &n); err != nil {
		return nil, false
	}
	return &n, true
}

// before is the offset of line n's start (the prefix of lines 1..n-1).
func (s *prefixSearch) before(n int) int { return s.starts[n-1] }

// lineEnd is the offset of line n's end, without its newline.
func (s *prefixSearch) lineEnd(n int) int { return s.starts[n-1] + len(s.lines[n-1]) }

func (s *prefixSearch) firstFailingLine() int {
	for n := 1; n <= len(s.lines) && s.ok; n++ {
		if _, ok := s.parse(s.lineEnd(n)); !ok && s.ok {
			return n
		}
	}
	return 1
}

// openedAt goes back from line n to the last line before which the file
// still parses: there the unclosed construct begins.
func (s *prefixSearch) openedAt(n int) int {
	for l := n; l >= 1 && s.ok; l-- {
		if _, ok := s.parse(s.before(l)); ok {
			return l
		}
	}
	return n
}

// column finds, on line n, the character after the longest prefix of the
// line that still parses (with the lines before it), and the field path
// of that prefix's last key.
func (s *prefixSearch) column(n int) (int, string, bool) {
	if _, ok := s.parse(s.before(n)); !ok {
		return 0, "", false
	}
	text := s.lines[n-1]
	for end := len(text); end >= 0 && s.ok; end-- {
		if end > 0 && end < len(text) && !utf8.RuneStart(text[end]) {
			continue
		}
		root, ok := s.parse(s.before(n) + end)
		if !ok {
			continue
		}
		if end == len(text) {
			return 0, "", false // the whole line parses: the problem is after it
		}
		return utf8.RuneCountInString(text[:end]) + 1, lastKey(root).String(), true
	}
	return 0, "", false
}

// lastKey is the path of the last key in a document, in file order (a
// list's index after it would name a value that parsed well).
func lastKey(n *yaml.Node) path {
	var p path
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for {
		switch {
		case n.Kind == yaml.MappingNode && len(n.Content) >= 2:
			p = append(p, n.Content[len(n.Content)-2].Value)
			n = n.Content[len(n.Content)-1]
		case n.Kind == yaml.SequenceNode && len(n.Content) > 0:
			p = append(p, len(n.Content)-1)
			n = n.Content[len(n.Content)-1]
		default:
			for len(p) > 0 {
				if _, ok := p[len(p)-1].(int); !ok {
					break
				}
				p = p[:len(p)-1]
			}
			return p
		}
	}
}

func firstNonBlank(line string) int {
	for i, r := range line {
		if r != ' ' && r != '\t' {
			return utf8.RuneCountInString(line[:i]) + 1
		}
	}
	return 1
}

// readerProblem tells yaml.v3's reader errors (reader.go), which are
// about one character.
func readerProblem(msg string) bool {
	return msg == "control characters are not allowed" || strings.Contains(msg, "UTF-8") || strings.Contains(msg, "UTF-16")
}

// badCharacter finds the first character yaml.v3's reader refuses: one
// that is not valid UTF-8, or not printable in YAML's sense (YAML 1.2
// section 5.1: tab, line breaks, and printable Unicode).
func badCharacter(data []byte) (line, col int, ok bool) {
	line, col = 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		printable := r == '\t' || r == '\n' || r == '\r' || r >= 0x20 && r <= 0x7e || r == 0x85 ||
			r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff
		if r == utf8.RuneError && size <= 1 || !printable {
			return line, col, true
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return 0, 0, false
}
