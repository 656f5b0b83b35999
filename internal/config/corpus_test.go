package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/validate/*/*.golden from the current output")

// corpusMin is what the corpus must hold at least (issue 23).
var corpusMin = map[string]int{"broken": 20, "dangerous": 6}

// errorLine is what every line of `validate` output for a problem is:
// file:line:col: then, but for a problem of the whole file, a field path.
var errorLine = regexp.MustCompile(`^testdata/validate/[a-z]+/[a-z0-9-]+\.yaml:(\d+):(\d+): `)

// TestValidateCorpus loads every file of testdata/validate and compares
// what `validate` would print with its .golden file: for broken/, every
// error and warning (Load fails); for dangerous/, the warnings (Load
// succeeds, and with WithStrict fails with the same lines as errors). The
// set is checked whole: a file without golden, a golden without file and
// a corpus below its minimum all fail.
func TestValidateCorpus(t *testing.T) {
	for kind, least := range corpusMin {
		dir := filepath.Join("testdata", "validate", kind)
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) < least {
			t.Errorf("%s: %d files, want at least %d", dir, len(files), least)
		}
		goldens, _ := filepath.Glob(filepath.Join(dir, "*.golden"))
		for _, g := range goldens {
			if !slices.Contains(files, strings.TrimSuffix(g, ".golden")+".yaml") {
				t.Errorf("%s has no configuration file", g)
			}
		}
		for _, file := range files {
			t.Run(kind+"/"+filepath.Base(file), func(t *testing.T) {
				got := corpusOutput(t, kind, file)
				golden := strings.TrimSuffix(file, ".yaml") + ".golden"
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("no golden output (go test -run TestValidateCorpus -update): %v", err)
				}
				if got != string(want) {
					t.Errorf("output differs from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
				}
			})
		}
	}
}

// corpusOutput is the problems of one file as `validate` prints them, one
// a line, after checking what holds for every file of its kind.
func corpusOutput(t *testing.T, kind, file string) string {
	t.Helper()
	c, err := Load(file)
	var es Errors
	switch kind {
	case "broken":
		if !errors.As(err, &es) || !errors.Is(err, ErrInvalid) {
			t.Fatalf("loads: %v", err)
		}
		if !slices.ContainsFunc(es, func(e *FieldError) bool { return !e.Warning }) {
			t.Errorf("only warnings:\n%v", es)
		}
	case "dangerous":
		if err != nil {
			t.Fatalf("does not load: %v", err)
		}
		es = c.Derived.Warnings
		if len(es) == 0 {
			t.Fatal("no warnings")
		}
		_, serr := Load(file, WithStrict(true))
		var strict Errors
		if !errors.As(serr, &strict) || !errors.Is(serr, ErrStrict) || !errors.Is(serr, ErrInvalid) {
			t.Fatalf("with WithStrict: %v", serr)
		}
		if got, want := serr.Error(), strings.ReplaceAll(es.Error(), ": warning: ", ": warning (strict): "); got != want {
			t.Errorf("strict errors are not the warnings:\n%s\nwant:\n%s", got, want)
		}
	}
	if errors.Is(err, ErrStrict) {
		t.Errorf("ErrStrict without WithStrict")
	}
	lastLine, lastCol := 0, 0
	for _, e := range es {
		if e.Line < 1 || e.Column < 1 {
			t.Errorf("no position: %v", e)
		}
		if e.Line < lastLine || e.Line == lastLine && e.Column < lastCol {
			t.Errorf("not in file order: %v after %d:%d", e, lastLine, lastCol)
		}
		lastLine, lastCol = e.Line, e.Column
		if !errorLine.MatchString(e.Error()) {
			t.Errorf("not file:line:col: %q", e)
		}
	}
	return es.Error() + "\n"
}
