package packaging

import (
	"embed"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The HA files, by the name Render and File take.
const (
	Keepalived = "keepalived.conf"
	Conntrackd = "conntrackd.conf"
	Notify     = "fqdngate-ha-notify"
)

//go:embed keepalived.conf conntrackd.conf fqdngate-ha-notify
var files embed.FS

// placeholder is how the files mark what a user fills in: @NAME@.
var placeholder = regexp.MustCompile(`@[A-Z][A-Z_]*@`)

// File is one of the HA files as shipped.
func File(name string) ([]byte, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("packaging: %w", err)
	}
	return b, nil
}

// Render fills in the placeholders of file name from vars (keys without
// the @). A placeholder left on a line that is not a comment is an error,
// and so is a key of vars the file does not use: either is a typo that
// would give keepalived or conntrackd a broken file.
func Render(name string, vars map[string]string) ([]byte, error) {
	b, err := File(name)
	if err != nil {
		return nil, err
	}
	used := make(map[string]bool)
	var missing []string
	lines := strings.SplitAfter(string(b), "\n")
	for i, line := range lines {
		comment := strings.HasPrefix(strings.TrimSpace(line), "#")
		lines[i] = placeholder.ReplaceAllStringFunc(line, func(m string) string {
			key := strings.Trim(m, "@")
			if v, ok := vars[key]; ok {
				used[key] = true
				return v
			}
			if !comment {
				missing = append(missing, fmt.Sprintf("%s line %d: %s", name, i+1, m))
			}
			return m
		})
	}
	for key := range vars {
		if !used[key] {
			missing = append(missing, fmt.Sprintf("%s: @%s@ is not in the file", name, key))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("packaging: %s", strings.Join(missing, "; "))
	}
	return []byte(strings.Join(lines, "")), nil
}

// Placeholders lists the placeholders file name uses outside comments,
// sorted: what a user must fill in.
func Placeholders(name string) ([]string, error) {
	b, err := File(name)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range placeholder.FindAllString(line, -1) {
			keys = append(keys, strings.Trim(m, "@"))
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}
