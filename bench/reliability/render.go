package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// runInfo says where and how the results were obtained.
type runInfo struct {
	Date    time.Time
	Machine string
	Go      string
	Command string
	Source  string // "this run" or the JSON file read
	Wall    time.Duration
	MapFile string
}

// report is everything the page shows.
type report struct {
	Info     runInfo
	Module   string
	Sections []*section
	Results  *results
	Status   map[*guarantee][]testStatus
}

// evaluate judges every test of every guarantee.
func evaluate(secs []*section, res *results, root, module string) map[*guarantee][]testStatus {
	decl := map[string]map[string]bool{}
	out := map[*guarantee][]testStatus{}
	for _, s := range secs {
		for _, g := range s.Guarantees {
			for _, ref := range g.Tests {
				out[g] = append(out[g], judge(ref, res, root, module, decl))
			}
		}
	}
	return out
}

// cell makes text safe inside a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func seconds(f float64) string {
	if f < 0.01 {
		return "<0.01 s"
	}
	return fmt.Sprintf("%.2f s", f)
}

// render writes docs/RELIABILITY.md.
func (r *report) render(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	tally := map[string]int{}
	partly := 0
	var failing []testStatus
	mapped := map[testRef]bool{}
	for _, s := range r.Sections {
		for _, g := range s.Guarantees {
			v := verdict(g, r.Status[g])
			tally[v]++
			if v == statusPass && len(g.Gaps) > 0 {
				partly++
			}
			for _, st := range r.Status[g] {
				mapped[st.Ref] = true
				if st.Status == statusFail && !containsRef(failing, st.Ref) {
					failing = append(failing, st)
				}
			}
		}
	}
	total := 0
	for _, n := range tally {
		total += n
	}
	pass, fail, skip := r.Results.counts()

	p("# Reliability\n\n")
	p("Every guarantee of SPEC §2 (home directory), §5 (supervising) and §6 (upgrading), each with the tests that prove it and their result in the latest run. ")
	p("Generated, not written by hand: the guarantees and their tests are listed in `%s`, the results are read from `go test -json`. ", r.Info.MapFile)
	p("To update: `go run ./bench/reliability` (runs the tests), or `go run ./bench/reliability FILE` (renders a saved `go test -json` output). ")
	p("The composed-fault simulation's section, at the end, is written by `go run ./bench/reliability -sim 500` and kept by the other two.\n\n")
	p("A guarantee is **pass** when every test listed for it passed, *pass, partly* when the tests leave something unproven (said under *Not covered*); ")
	p("otherwise it shows its worst test: **FAIL**, **MISSING** (the test named does not exist), **NOT RUN**, **SKIPPED**; **UNTESTED** when no test is listed. ")
	p("A fuzz target (`Fuzz...`) counts by its seed corpus, which every `go test` runs. The numbers are this page's own, not the SPEC's paragraphs.\n\n")

	p("| run | |\n|---|---|\n")
	p("| date | %s |\n", r.Info.Date.UTC().Format("2006-01-02 15:04 UTC"))
	p("| machine | %s |\n", cell(r.Info.Machine))
	p("| Go | %s |\n", cell(r.Info.Go))
	p("| command | `%s` (%s) |\n", r.Info.Command, r.Info.Source)
	if r.Info.Wall > 0 {
		p("| took | %s |\n", r.Info.Wall.Round(time.Second))
	}
	p("| tests run | %d passed, %d failed, %d skipped (subtests and fuzz seed corpora included) |\n", pass, fail, skip)
	if fp := r.Results.failedPackages(); len(fp) > 0 {
		p("| packages failed | %s |\n", cell(strings.Join(r.shortPkgs(fp), ", ")))
	}
	p("| guarantees | %d: %s |\n\n", total, strings.Replace(tallyText(tally), statusPass, fmt.Sprintf("%s (%d of them partly)", statusPass, partly), 1))

	for _, s := range r.Sections {
		p("## %s\n\n", s.Title)
		p("| # | guarantee | result | tests |\n|---|---|---|---|\n")
		for _, g := range s.Guarantees {
			v := verdict(g, r.Status[g])
			switch {
			case v == statusPass && len(g.Gaps) > 0:
				v = "*pass, partly*"
			case v != statusPass:
				v = "**" + v + "**"
			}
			var tests []string
			for _, st := range r.Status[g] {
				t := fmt.Sprintf("%s `%s`", st.Status, st.Ref.Short(r.Module))
				switch {
				case st.Why != "":
					t += " (" + st.Why + ")"
				case strings.HasPrefix(st.Ref.Name, "Fuzz"):
					t += " (seed corpus)"
				case st.Status == statusPass || st.Status == statusFail:
					t += " " + seconds(st.Elapsed)
				}
				tests = append(tests, cell(t))
			}
			if len(tests) == 0 {
				tests = append(tests, "none")
			}
			text := cell(g.Text)
			for _, gap := range g.Gaps {
				text += "<br>*Not covered:* " + cell(gap)
			}
			p("| %s | %s | %s | %s |\n", strings.TrimPrefix(g.ID, "§"), text, v, strings.Join(tests, "<br>"))
		}
		p("\n")
	}

	if len(failing) > 0 {
		p("## Failures\n\n")
		for _, st := range failing {
			p("### `%s`\n\n```\n%s\n```\n\n", st.Ref.Short(r.Module), excerpt(st.Output, 30))
		}
	}
	var others []string
	for ref, o := range r.Results.Tests {
		if o.Action == "fail" && !mapped[ref] && !hasFailedChild(r.Results, ref) {
			others = append(others, ref.Short(r.Module))
		}
	}
	if len(others) > 0 {
		sort.Strings(others)
		p("## Other failing tests\n\nFailed in the same run, not listed for any guarantee:\n\n")
		for _, o := range others {
			p("- `%s`\n", o)
		}
		p("\n")
	}
	var broken []string
	for _, name := range r.Results.failedPackages() {
		if pk := r.Results.Packages[name]; pk.BuildFailed || !hasFailedTest(r.Results, name) {
			broken = append(broken, fmt.Sprintf("### `%s`\n\n```\n%s\n```\n", name, excerpt(pk.Output, 30)))
		}
	}
	if len(broken) > 0 {
		p("## Packages that failed outside any test\n\n%s\n", strings.Join(broken, "\n"))
	}
	_, err := io.WriteString(w, strings.TrimRight(b.String(), "\n")+"\n")
	return err
}

func (r *report) shortPkgs(pkgs []string) []string {
	out := make([]string, len(pkgs))
	for i, p := range pkgs {
		out[i] = strings.TrimPrefix(strings.TrimPrefix(p, r.Module), "/")
		if out[i] == "" {
			out[i] = "(root)"
		}
	}
	return out
}

func tallyText(t map[string]int) string {
	var parts []string
	for _, s := range []string{statusPass, statusFail, statusMissing, statusNotRun, statusSkip, statusUntested} {
		if t[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", t[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

func containsRef(sts []testStatus, ref testRef) bool {
	for _, s := range sts {
		if s.Ref == ref {
			return true
		}
	}
	return false
}

// hasFailedChild reports whether a subtest of ref failed: then the parent's
// failure says nothing more.
func hasFailedChild(res *results, ref testRef) bool {
	for other, o := range res.Tests {
		if o.Action == "fail" && other.Pkg == ref.Pkg && strings.HasPrefix(other.Name, ref.Name+"/") {
			return true
		}
	}
	return false
}

func hasFailedTest(res *results, pkg string) bool {
	for ref, o := range res.Tests {
		if ref.Pkg == pkg && o.Action == "fail" {
			return true
		}
	}
	return false
}

// excerpt keeps the last n meaningful lines of a test's output.
func excerpt(lines []string, n int) string {
	var keep []string
	for _, l := range lines {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "=== RUN") || strings.HasPrefix(t, "=== PAUSE") || strings.HasPrefix(t, "=== CONT") {
			continue
		}
		keep = append(keep, strings.ReplaceAll(l, "```", "'''"))
	}
	if len(keep) > n {
		keep = append([]string{fmt.Sprintf("[%d lines before]", len(keep)-n)}, keep[len(keep)-n:]...)
	}
	if len(keep) == 0 {
		return "(no output)"
	}
	return strings.Join(keep, "\n")
}
