package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// section is one heading of the mapping file: "§2 Home directory".
type section struct {
	Title      string
	Guarantees []*guarantee
}

// guarantee is one promise of the SPEC and the tests that prove it.
type guarantee struct {
	ID    string // "§2.8", numbered in file order within its section
	Text  string
	Tests []testRef
	Gaps  []string // what no test covers, said plainly
	Line  int      // in the mapping file, for messages
}

// testRef names a test as `go test -json` reports it: its package import path
// and its name, a subtest with its parent ("TestDecide/pin_reached").
type testRef struct {
	Pkg  string // import path
	Name string
}

// Short is the reference as written in the mapping file.
func (r testRef) Short(module string) string {
	p := strings.TrimPrefix(strings.TrimPrefix(r.Pkg, module), "/")
	if p == "" {
		return r.Name
	}
	return p + "." + r.Name
}

// Top is the name of the test function: the part before the first "/".
func (r testRef) Top() string {
	top, _, _ := strings.Cut(r.Name, "/")
	return top
}

// parseGuarantees reads the mapping file. Its format, line by line:
//
//	# comment
//	## §2 Home directory          a section
//	- text of a guarantee         a guarantee of the last section
//	    upgrade TestSwapSymlink   a test proving it: package ("." for the
//	                              module's root) and test name
//	    gap: text                 what the tests do not cover
//
// Package paths are relative to module.
func parseGuarantees(r io.Reader, module string) ([]*section, error) {
	var (
		out  []*section
		last *guarantee
	)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		indented := trimmed != "" && (line[0] == ' ' || line[0] == '\t')
		switch {
		case trimmed == "" || trimmed == "#" || strings.HasPrefix(trimmed, "# "):
		case strings.HasPrefix(trimmed, "## "):
			out = append(out, &section{Title: strings.TrimSpace(trimmed[3:])})
			last = nil
		case !indented && strings.HasPrefix(trimmed, "- "):
			if len(out) == 0 {
				return nil, fmt.Errorf("line %d: a guarantee before any \"## \" section", n)
			}
			s := out[len(out)-1]
			last = &guarantee{Text: strings.TrimSpace(trimmed[2:]), Line: n}
			last.ID = fmt.Sprintf("%s.%d", sectionNumber(s.Title), len(s.Guarantees)+1)
			s.Guarantees = append(s.Guarantees, last)
		case indented && last != nil && strings.HasPrefix(trimmed, "gap:"):
			last.Gaps = append(last.Gaps, strings.TrimSpace(strings.TrimPrefix(trimmed, "gap:")))
		case indented && last != nil:
			f := strings.Fields(trimmed)
			if len(f) != 2 || !(strings.HasPrefix(f[1], "Test") || strings.HasPrefix(f[1], "Fuzz")) {
				return nil, fmt.Errorf("line %d: want \"<package> <TestName>\" or \"gap: <text>\", got %q", n, trimmed)
			}
			pkg := module
			if f[0] != "." {
				pkg = module + "/" + strings.TrimPrefix(f[0], "./")
			}
			last.Tests = append(last.Tests, testRef{Pkg: pkg, Name: f[1]})
		default:
			return nil, fmt.Errorf("line %d: want a \"## \" section, a \"- \" guarantee or an indented test, got %q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no \"## \" section")
	}
	return out, nil
}

// sectionNumber is the "§2" that starts a section title, or the whole title.
func sectionNumber(title string) string {
	f := strings.Fields(title)
	if len(f) > 0 && strings.HasPrefix(f[0], "§") {
		return f[0]
	}
	return title
}
