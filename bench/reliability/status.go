package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Statuses of a test and of a guarantee, as the report prints them.
const (
	statusPass     = "pass"
	statusFail     = "FAIL"
	statusSkip     = "SKIPPED"
	statusMissing  = "MISSING"
	statusNotRun   = "NOT RUN"
	statusUntested = "UNTESTED"
)

// testStatus is the verdict on one test reference, with the reason when it
// did not simply pass or fail.
type testStatus struct {
	Ref     testRef
	Status  string
	Why     string
	Elapsed float64
	Output  []string
}

var testFunc = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)\w*)\(`)

// declared lists the test and fuzz functions of the package at dir.
func declared(dir string) map[string]bool {
	out := map[string]bool{}
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, m := range testFunc.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
	}
	return out
}

// judge finds what became of ref in res. root and module locate the package's
// folder, to tell a test that does not exist from one that did not run.
func judge(ref testRef, res *results, root, module string, decl map[string]map[string]bool) testStatus {
	st := testStatus{Ref: ref}
	if o, ok := res.Tests[ref]; ok {
		st.Elapsed, st.Output = o.Elapsed, o.Output
		switch o.Action {
		case "pass":
			st.Status = statusPass
		case "fail":
			st.Status = statusFail
		default:
			st.Status, st.Why = statusSkip, skipReason(o.Output)
		}
		return st
	}
	funcs, ok := decl[ref.Pkg]
	if !ok {
		dir := filepath.Join(root, strings.TrimPrefix(strings.TrimPrefix(ref.Pkg, module), "/"))
		funcs = declared(dir)
		decl[ref.Pkg] = funcs
	}
	if !funcs[ref.Top()] {
		st.Status, st.Why = statusMissing, "no func "+ref.Top()+" in the package"
		return st
	}
	if parent, ok := res.Tests[testRef{Pkg: ref.Pkg, Name: ref.Top()}]; ok && parent.Action == "pass" {
		st.Status, st.Why = statusMissing, ref.Top()+" passed without running this subtest"
		return st
	}
	st.Status = statusNotRun
	switch p := res.Packages[ref.Pkg]; {
	case p == nil:
		st.Why = "its package is not in the run"
	case p.BuildFailed:
		st.Why = "its package did not build"
	case p.Action == "fail":
		st.Why = "its package failed before reaching it: a panic or a timeout"
	default:
		st.Why = "no result in the run"
	}
	return st
}

func skipReason(out []string) string {
	for _, l := range out {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "=== ") && !strings.HasPrefix(l, "--- SKIP") {
			return l
		}
	}
	return ""
}

// verdict sums up the tests of a guarantee: the worst of them decides.
func verdict(g *guarantee, sts []testStatus) string {
	if len(g.Tests) == 0 {
		return statusUntested
	}
	rank := map[string]int{statusPass: 0, statusSkip: 1, statusNotRun: 2, statusMissing: 3, statusFail: 4}
	worst := statusPass
	for _, s := range sts {
		if rank[s.Status] > rank[worst] {
			worst = s.Status
		}
	}
	return worst
}
