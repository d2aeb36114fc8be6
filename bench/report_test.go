package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseBenchLineReadsMetrics(t *testing.T) {
	out := "goos: linux\nBenchmarkRollingUpgrade-2   \t       3\t1431966776 ns/op\t      1014 detect-ms\t         3.156 gap-mean-ms\nPASS\n"
	m, n, err := parseBenchLine(out, "BenchmarkRollingUpgrade")
	if err != nil || n != 3 || m["detect-ms"] != 1014 || m["gap-mean-ms"] != 3.156 || m["ns/op"] != 1431966776 {
		t.Fatalf("got %v %d %v", m, n, err)
	}
	if _, _, err := parseBenchLine("PASS\n", "BenchmarkRollingUpgrade"); err == nil || !strings.Contains(err.Error(), "no BenchmarkRollingUpgrade line") {
		t.Errorf("missing line: %v", err)
	}
	if _, _, err := parseBenchLine("BenchmarkRollingUpgrade-2 3 x detect-ms\n", "BenchmarkRollingUpgrade"); err == nil || !strings.Contains(err.Error(), `value "x"`) {
		t.Errorf("bad value: %v", err)
	}
}

func TestParseFaultLine(t *testing.T) {
	// As faultinject_test.go logs it under go test -v.
	line := "    faultinject_test.go:185: fault injection: 12 iterations, seed 1795636776950504419, 11 passed, 1 failed, 40.1s; " +
		"19 SIGKILLs, journal step at the kill: fetch 1, none 15, restart (2 moved) 1; cases: raise 1, double 2; failed: 03-crash"
	s, ok := parseFaultLine("=== RUN x\n" + line + "\n--- FAIL: x\n")
	if !ok || s.iterations != 12 || s.seed != "1795636776950504419" || s.passed != 11 || s.failed != 1 || s.took != "40.1s" ||
		s.kills != 19 || s.steps != "fetch 1, none 15, restart (2 moved) 1" || s.cases != "raise 1, double 2" || s.names != "03-crash" ||
		!strings.HasPrefix(s.line, "fault injection: 12") {
		t.Fatalf("got %+v %v", s, ok)
	}
	if _, ok := parseFaultLine("PASS\n"); ok {
		t.Error("found a summary in output without one")
	}
}

func TestReadPreviousKeepsSectionsAndGoals(t *testing.T) {
	doc := "# Benchmarks\n\n| machine |  |\n|---|---|\n| date | 2026-11-25 19:30 UTC |\n\n## Goals\n\n" +
		"| scenario | goal | LavaVisor | met |\n|---|---|---|---|\n| shutdown | fast | 9 ms | yes |\n| crashloop | few | 4 | yes |\n\n" +
		"## Shutdown\n\nmethod\n\n| a |\n|---|\n| 1 |\n\n## Upgrade timing (go test -bench RollingUpgrade)\n\nby hand\n"
	path := filepath.Join(t.TempDir(), "B.md")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	p := readPrevious(path)
	if p.date != "2026-11-25 19:30 UTC" {
		t.Errorf("date %q", p.date)
	}
	if p.sections["Shutdown"] != "method\n\n| a |\n|---|\n| 1 |" || p.sections["Upgrade timing (go test -bench RollingUpgrade)"] != "by hand" {
		t.Errorf("sections %q", p.sections)
	}
	if _, ok := p.sections["Goals"]; ok {
		t.Error("the goals table is not a section to keep")
	}
	if g := p.goals["shutdown"]; len(g) != 1 || strings.Join(g[0].kept, "|") != "shutdown|fast|9 ms|yes" {
		t.Errorf("goals %v", p.goals)
	}
	kept := keptBody(p.sections["Shutdown"], p.date)
	if !strings.HasPrefix(kept, "_Not measured in this run: kept from the report of 2026-11-25 19:30 UTC._\n\nmethod") {
		t.Errorf("kept %q", kept)
	}
	// Kept again later: it keeps the date it was measured.
	if keptBody(kept, "2027-01-01") != kept {
		t.Error("a kept section was dated again")
	}
	if p := readPrevious(filepath.Join(t.TempDir(), "none.md")); len(p.sections) != 0 || p.date != "an earlier run" {
		t.Errorf("missing report: %+v", p)
	}
}

func TestSettingsTextNamesOnlyChangedSettings(t *testing.T) {
	if s := settingsText([]setting{{"BENCH_RUNS", "3", "3"}}); s != "" {
		t.Errorf("defaults: %q", s)
	}
	if s := settingsText([]setting{{"BENCH_RUNS", "5", "3"}, {"BENCH_SECONDS", "5", "5"}, {"BENCH_SCENARIOS", "faults", "a,b"}}); s != "BENCH_RUNS=5 BENCH_SCENARIOS=faults " {
		t.Errorf("changed: %q", s)
	}
}

func TestReadStatParsesOddNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stat")
	if err := os.WriteFile(path, []byte("42 (a) b (c)) Z 7 42 42 0 -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, ppid, ok := readStat(path)
	if !ok || st != 'Z' || ppid != 7 {
		t.Errorf("got %c %d %v", st, ppid, ok)
	}
	if _, _, ok := readStat(filepath.Join(t.TempDir(), "none")); ok {
		t.Error("a missing file parsed")
	}
}
