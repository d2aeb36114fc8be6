package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time        time.Time
	Action      string
	Package     string
	ImportPath  string // build-output and build-fail events
	Test        string
	Elapsed     float64
	Output      string
	FailedBuild string
}

// outcome is what became of one test.
type outcome struct {
	Action  string // pass, fail or skip
	Elapsed float64
	Output  []string
}

// pkgOutcome is what became of one package.
type pkgOutcome struct {
	Action      string // pass, fail or skip (no test files)
	Elapsed     float64
	BuildFailed bool
	Output      []string // the package's own lines: build errors, panics, timeouts
}

// results are the outcomes of one `go test -json` run.
type results struct {
	Tests    map[testRef]*outcome
	Packages map[string]*pkgOutcome
	First    time.Time
	Last     time.Time
	// Stray are the lines that were not JSON (stderr mixed in).
	Stray []string
}

// readResults reads `go test -json` output.
func readResults(r io.Reader) (*results, error) {
	res := &results{Tests: map[testRef]*outcome{}, Packages: map[string]*pkgOutcome{}}
	pending := map[testRef][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			if s := strings.TrimSpace(string(line)); s != "" {
				res.Stray = append(res.Stray, s)
			}
			continue
		}
		if !e.Time.IsZero() {
			if res.First.IsZero() || e.Time.Before(res.First) {
				res.First = e.Time
			}
			if e.Time.After(res.Last) {
				res.Last = e.Time
			}
		}
		pkg := e.Package
		if pkg == "" {
			// Build events name what was built: "example.com/m/p.test",
			// "example.com/m/p [example.com/m/p.test]", "example.com/m/p_test [...]".
			pkg, _, _ = strings.Cut(e.ImportPath, " ")
			pkg = strings.TrimSuffix(strings.TrimSuffix(pkg, ".test"), "_test")
		}
		if pkg == "" {
			continue
		}
		p := res.Packages[pkg]
		if p == nil {
			p = &pkgOutcome{}
			res.Packages[pkg] = p
		}
		if e.Test == "" {
			switch e.Action {
			case "pass", "fail", "skip":
				p.Action, p.Elapsed = e.Action, e.Elapsed
				if e.FailedBuild != "" {
					p.BuildFailed = true
				}
			case "build-fail":
				p.BuildFailed = true
			case "output", "build-output":
				p.Output = append(p.Output, strings.TrimRight(e.Output, "\n"))
			}
			continue
		}
		ref := testRef{Pkg: pkg, Name: e.Test}
		switch e.Action {
		case "output":
			pending[ref] = append(pending[ref], strings.TrimRight(e.Output, "\n"))
		case "pass", "fail", "skip":
			res.Tests[ref] = &outcome{Action: e.Action, Elapsed: e.Elapsed, Output: pending[ref]}
			delete(pending, ref)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read go test -json output: %w", err)
	}
	if len(res.Packages) == 0 {
		return nil, fmt.Errorf("no go test -json events in the input")
	}
	return res, nil
}

// counts returns how many tests passed, failed and were skipped.
func (r *results) counts() (pass, fail, skip int) {
	for _, o := range r.Tests {
		switch o.Action {
		case "pass":
			pass++
		case "fail":
			fail++
		case "skip":
			skip++
		}
	}
	return
}

// failedPackages lists the packages that failed, sorted.
func (r *results) failedPackages() []string {
	var out []string
	for name, p := range r.Packages {
		if p.Action == "fail" || p.BuildFailed {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}
