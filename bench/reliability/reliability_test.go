package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testModule = "example.com/m"

// fakeModule is a module root whose package p declares TestA, TestB, TestC,
// TestSub and FuzzX, and whose package broken declares TestD.
func fakeModule(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for dir, src := range map[string]string{
		"p":      "package p\n\nfunc TestA(t *testing.T) {}\nfunc TestB(t *testing.T) {}\nfunc TestC(t *testing.T) {}\nfunc TestSub(t *testing.T) {}\nfunc FuzzX(f *testing.F) {}\n",
		"broken": "package broken\n\nfunc TestD(t *testing.T) {}\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dir, "x_test.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fakeRun is go test -json output: TestA passes, TestB fails, TestC never
// reports (the package panicked), TestSub passes without subtest "gone",
// FuzzX's seeds pass, and package broken does not build.
const fakeRun = `{"Time":"2026-11-25T20:00:00Z","Action":"start","Package":"example.com/m/p"}
{"Time":"2026-11-25T20:00:01Z","Action":"run","Package":"example.com/m/p","Test":"TestA"}
{"Time":"2026-11-25T20:00:01Z","Action":"pass","Package":"example.com/m/p","Test":"TestA","Elapsed":1.5}
{"Time":"2026-11-25T20:00:01Z","Action":"output","Package":"example.com/m/p","Test":"TestB","Output":"    b_test.go:9: want 1, got 2\n"}
{"Time":"2026-11-25T20:00:02Z","Action":"fail","Package":"example.com/m/p","Test":"TestB","Elapsed":0.2}
{"Time":"2026-11-25T20:00:02Z","Action":"pass","Package":"example.com/m/p","Test":"TestSub/here","Elapsed":0}
{"Time":"2026-11-25T20:00:02Z","Action":"pass","Package":"example.com/m/p","Test":"TestSub","Elapsed":0}
{"Time":"2026-11-25T20:00:02Z","Action":"pass","Package":"example.com/m/p","Test":"FuzzX","Elapsed":0}
{"Time":"2026-11-25T20:00:02Z","Action":"fail","Package":"example.com/m/p","Test":"TestOther","Elapsed":0}
{"Time":"2026-11-25T20:00:03Z","Action":"output","Package":"example.com/m/p","Output":"panic: boom\n"}
{"Time":"2026-11-25T20:00:03Z","Action":"fail","Package":"example.com/m/p","Elapsed":3}
{"ImportPath":"example.com/m/broken.test","Action":"build-output","Output":"broken/x_test.go:3:1: syntax error\n"}
{"Time":"2026-11-25T20:00:04Z","Action":"start","Package":"example.com/m/broken"}
{"Time":"2026-11-25T20:00:04Z","Action":"output","Package":"example.com/m/broken","Output":"FAIL\texample.com/m/broken [build failed]\n"}
{"Time":"2026-11-25T20:00:04Z","Action":"fail","Package":"example.com/m/broken","Elapsed":0,"FailedBuild":"example.com/m/broken [example.com/m/broken.test]"}
`

const mapping = `# comment
#
## §2 Home directory

- passes
    p TestA
- fails
    p TestA
    p TestB
- has a missing test
    p TestNope
- has a missing subtest
    p TestSub/gone
- did not run
    p TestC
- did not build
    broken TestD
- passes, partly
    p FuzzX
    p TestSub/here
    gap: not all of it
- has no test
    gap: nothing tests this
`

func renderFake(t *testing.T) (string, map[string]string) {
	t.Helper()
	root := fakeModule(t)
	secs, err := parseGuarantees(strings.NewReader(mapping), testModule)
	if err != nil {
		t.Fatal(err)
	}
	res, err := readResults(strings.NewReader(fakeRun))
	if err != nil {
		t.Fatal(err)
	}
	rep := &report{
		Info:   runInfo{Date: time.Date(2026, 11, 25, 20, 0, 0, 0, time.UTC), Machine: "m", Go: "go1.26.8", Command: testCommand, Source: "this run", MapFile: "g.txt"},
		Module: testModule, Sections: secs, Results: res, Status: evaluate(secs, res, root, testModule),
	}
	var b bytes.Buffer
	if err := rep.render(&b); err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]string{}
	for _, g := range secs[0].Guarantees {
		verdicts[g.Text] = verdict(g, rep.Status[g])
	}
	return b.String(), verdicts
}

func TestVerdicts(t *testing.T) {
	_, got := renderFake(t)
	want := map[string]string{
		"passes":                statusPass,
		"fails":                 statusFail,
		"has a missing test":    statusMissing,
		"has a missing subtest": statusMissing,
		"did not run":           statusNotRun,
		"did not build":         statusNotRun,
		"passes, partly":        statusPass,
		"has no test":           statusUntested,
	}
	for text, w := range want {
		if got[text] != w {
			t.Errorf("%q: %s, want %s", text, got[text], w)
		}
	}
}

// The page shows each problem plainly, next to the guarantee it undermines.
func TestRenderShowsProblemsPlainly(t *testing.T) {
	page, _ := renderFake(t)
	for _, want := range []string{
		"| 2.1 | passes | pass | pass `p.TestA` 1.50 s |",
		"| 2.2 | fails | **FAIL** | pass `p.TestA` 1.50 s<br>FAIL `p.TestB` 0.20 s |",
		"| 2.3 | has a missing test | **MISSING** | MISSING `p.TestNope` (no func TestNope in the package) |",
		"MISSING `p.TestSub/gone` (TestSub passed without running this subtest)",
		"NOT RUN `p.TestC` (its package failed before reaching it: a panic or a timeout)",
		"NOT RUN `broken.TestD` (its package did not build)",
		"| 2.7 | passes, partly<br>*Not covered:* not all of it | *pass, partly* | pass `p.FuzzX` (seed corpus)<br>pass `p.TestSub/here` <0.01 s |",
		"| 2.8 | has no test<br>*Not covered:* nothing tests this | **UNTESTED** | none |",
		"| guarantees | 8: 2 pass (1 of them partly), 1 FAIL, 2 MISSING, 2 NOT RUN, 1 UNTESTED |",
		"| tests run | 4 passed, 2 failed, 0 skipped",
		"| packages failed | broken, p |",
		"### `p.TestB`\n\n```\n    b_test.go:9: want 1, got 2\n```",
		"## Other failing tests",
		"- `p.TestOther`",
		"broken/x_test.go:3:1: syntax error",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}

func TestParseGuaranteesErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"- orphan\n", `line 1: a guarantee before any "## " section`},
		{"## §2 x\n- g\n    p\n", `line 3: want "<package> <TestName>" or "gap: <text>", got "p"`},
		{"## §2 x\n- g\n    p NotATest\n", `line 3: want "<package> <TestName>"`},
		{"## §2 x\nstray\n", `line 2: want a "## " section`},
		{"# only a comment\n", `no "## " section`},
	} {
		_, err := parseGuarantees(strings.NewReader(c.in), testModule)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
}

// The real mapping parses, and every test it names exists in the repository.
func TestGuaranteesFileNamesRealTests(t *testing.T) {
	f, err := os.Open("guarantees.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const module = "github.com/lavavisor/lavavisor"
	secs, err := parseGuarantees(f, module)
	if err != nil {
		t.Fatal(err)
	}
	if len(secs) != 6 {
		t.Errorf("%d sections, want §2, §5, §6, §6.8, §7 and §9", len(secs))
	}
	decl := map[string]map[string]bool{}
	for _, s := range secs {
		for _, g := range s.Guarantees {
			for _, ref := range g.Tests {
				dir := filepath.Join("..", "..", strings.TrimPrefix(strings.TrimPrefix(ref.Pkg, module), "/"))
				if decl[dir] == nil {
					decl[dir] = declared(dir)
				}
				if !decl[dir][ref.Top()] {
					t.Errorf("%s %q names %s, which %s does not declare", g.ID, g.Text, ref.Short(module), dir)
				}
			}
		}
	}
}

func TestReadResultsRejectsNonJSON(t *testing.T) {
	if _, err := readResults(strings.NewReader("ok  \texample.com/m/p\t0.1s\n")); err == nil || !strings.Contains(err.Error(), "no go test -json events") {
		t.Errorf("err = %v", err)
	}
}
