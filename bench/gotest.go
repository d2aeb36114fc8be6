package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Two scenarios are Go tests of the repository, run by `go test` and read
// from its output: the upgrade timing (a benchmark) and the fault injection.

// goTest runs `go test args...` in the repository with extra environment,
// its output saved to logName in the work folder; it returns the output and
// the error of the run (a failing test is an *exec.ExitError).
func (b *bench) goTest(logName string, env []string, args ...string) (string, string, error) {
	cmd := exec.CommandContext(b.ctx, "go", append([]string{"test"}, args...)...)
	cmd.Dir = b.repo
	cmd.Env = append(os.Environ(), env...)
	// Its own process group: a Ctrl-C of the bench reaches go, the test
	// binary and the lavavisor it runs, which stop their children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	fmt.Fprintf(b.log, "  %s go test %s\n", strings.Join(env, " "), strings.Join(args, " "))
	out, err := cmd.CombinedOutput()
	logPath := b.work + "/" + logName
	if werr := os.WriteFile(logPath, out, 0o644); werr != nil {
		fmt.Fprintf(b.log, "  keep go test output: %v\n", werr)
	}
	if b.ctx.Err() != nil {
		return string(out), logPath, b.ctx.Err()
	}
	return string(out), logPath, err
}

// upgradeMetrics are the figures BenchmarkRollingUpgrade reports, by unit.
type upgradeMetrics map[string]float64

// parseBenchLine reads the metrics of the first output line of benchmark name.
func parseBenchLine(out, name string) (upgradeMetrics, int, error) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		m := upgradeMetrics{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, 0, fmt.Errorf("benchmark line %q: value %q: %w", line, f[i], err)
			}
			m[f[i+1]] = v
		}
		return m, n, nil
	}
	return nil, 0, fmt.Errorf("no %s line in the go test output", name)
}

// upgradeRows are the figures of the upgrade section: unit, figure, definition.
var upgradeRows = [][3]string{
	{"detect-ms", "detection latency (worst case)", "versions file changed → first stop signal received by a child"},
	{"react-ms", "of which LavaVisor's reaction", "the poll that saw the change → first stop signal (journal, find release, swap `current`)"},
	{"gap-mean-ms", "per-service gap, mean", "old process exit → new process start (the child's stop time is outside it)"},
	{"gap-max-ms", "per-service gap, max", ""},
	{"launch-ms", "of which launching the child", "exec of the fake to its first line in `main`, measured without LavaVisor"},
	{"share", "LavaVisor's share of the gap, mean", "gap − launch; goal < 20 ms"},
	{"stop-ms", "child stop time, mean", "stop signal → exit, the fake's own"},
	{"handoff-ms", "handoff, mean", "previous service's new start + min-uptime → next service's stop signal"},
	{"last-start-ms", "rolling upgrade, first signal → last new start", ""},
	{"done-ms", "rolling upgrade, first signal → `upgrade done`", "includes the last service's min-uptime"},
	{"stop+minup-sum-ms", "Σ (stop time + min-uptime), 3 services", "the floor for the line above"},
	{"overhead-ms", "overhead", "`upgrade done` − floor: three gaps, handoffs, journal writes"},
}

func (b *bench) upgrade() (section, []goal) {
	args := []string{"-run", "^$", "-bench", "^BenchmarkRollingUpgrade$", "-benchtime", fmt.Sprintf("%dx", b.upgradeRuns), "-count", "1", "."}
	s := section{
		title: "Upgrade timing (go test -bench RollingUpgrade)",
		method: fmt.Sprintf("LavaVisor alone. `go test %s` (`upgrade_bench_test.go`; `BENCH_UPGRADE_RUNS` sets the count): the real binary rolls 3 fake "+
			"providers from 6.2.5 to 6.2.6 (placed locally: no download), `poll-interval: 1s`, `min-uptime: 200ms`, `rolling: true`, `stop-signal` SIGINT "+
			"(the fake exits at once). Times are stamped inside the children (`FAKE_TIMELINE`) and as LavaVisor's log lines are read. The versions "+
			"file is changed just after a poll, so detection is the worst case for the interval. Means over %d upgrades (%d service restarts).",
			strings.Join(args, " "), b.upgradeRuns, 3*b.upgradeRuns),
	}
	out, logPath, err := b.goTest("upgrade-bench.log", nil, args...)
	if errors.Is(err, context.Canceled) {
		return s, nil
	}
	if err != nil {
		s.notes = append(s.notes, fmt.Sprintf("go test failed (%v); its output: %s", err, lastLines(out, 15)))
		return s, nil
	}
	m, n, err := parseBenchLine(out, "BenchmarkRollingUpgrade")
	if err != nil {
		s.notes = append(s.notes, fmt.Sprintf("%v (output in %s)", err, logPath))
		return s, nil
	}
	fmt.Fprintf(b.log, "  %d upgrades: %v\n", n, m)
	share := m["gap-mean-ms"] - m["launch-ms"]
	t := table{header: []string{"figure", "definition", "ms"}}
	for _, r := range upgradeRows {
		v, ok := m[r[0]]
		if r[0] == "share" {
			v, ok = share, true
		}
		cell := "—"
		if ok {
			cell = fmt.Sprintf("%.1f", v)
		}
		t.rows = append(t.rows, []string{r[1], r[2], cell})
	}
	s.tables = append(s.tables, t)
	s.notes = append(s.notes, fmt.Sprintf("With a random moment of change the mean detection latency is about half the poll interval plus the reaction "+
		"(≈ %.0f ms at 1 s).", 500+m["react-ms"]))
	return s, []goal{{"LavaVisor's share of the per-service upgrade gap < 20 ms", fmt.Sprintf("%.1f ms", share), share < 20}}
}

// faultLine is the summary TestFaultInjectionKillDuringUpgrade logs.
var faultLine = regexp.MustCompile(`fault injection: (\d+) iterations, seed (\d+), (\d+) passed, (\d+) failed, (\S+); (\d+) SIGKILLs, journal step at the kill: (.*); cases: ([^;]*)(?:; failed: (.*))?$`)

type faultSummary struct {
	iterations, passed, failed, kills int
	seed, took, steps, cases, names   string
	line                              string
}

func parseFaultLine(out string) (faultSummary, bool) {
	for _, line := range strings.Split(out, "\n") {
		m := faultLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
		return faultSummary{iterations: atoi(m[1]), seed: m[2], passed: atoi(m[3]), failed: atoi(m[4]), took: m[5],
			kills: atoi(m[6]), steps: m[7], cases: m[8], names: m[9], line: m[0]}, true
	}
	return faultSummary{}, false
}

func (b *bench) faults() (section, []goal) {
	n := b.faultIterations
	// Each iteration takes a few seconds; go test's own default timeout is 10 min.
	timeout := 5*time.Minute + time.Duration(n)*20*time.Second
	args := []string{"-run", "^TestFaultInjectionKillDuringUpgrade$", "-count", "1", "-v", "-timeout", timeout.String(), "."}
	env := []string{"LAVAVISOR_FAULT_ITERATIONS=" + strconv.Itoa(n)}
	s := section{
		title: "Fault injection (go test -run FaultInjection)",
		method: fmt.Sprintf("`LAVAVISOR_FAULT_ITERATIONS=%d go test %s` (`faultinject_test.go`; CI runs 5; `BENCH_FAULT_ITERATIONS` sets the count here, "+
			"`LAVAVISOR_FAULT_SEED` replays a run's random choices). Each iteration: the real binary runs 3 fake providers on 6.2.5, `rolling: true`, "+
			"`min-uptime` 150–300 ms, `poll-interval: 100ms`; the releases are placed in the home or downloaded from a release server that waits "+
			"0–400 ms before sending a binary; half the time the services ignore their stop signal and are killed after a `stop-timeout` of "+
			"100–300 ms (slow stops: longer restarts and rollbacks to be killed in); a random case "+
			"changes the versions: a target raise (raise), two raises in quick succession (double), a release that crashes at start (crash), "+
			"a crashing release then a good one (crash-then-fix), a minimum jumping over a placed release (min-jump), a crashing release that is "+
			"also the minimum (crash-below-min). LavaVisor gets SIGKILL 0–1.5 s after the change (a third of the time again 0–1.5 s after it "+
			"is started again). After each SIGKILL: every process of the killed instance dies (parent-death signal) within 5 s, and `current` "+
			"is a complete verified release (manifest sha256 = binary's); throughout, no service runs twice at once nor on a release below the "+
			"minimum that was not the one running before; then the upgrade resumes: every service ends running exactly once on the wanted "+
			"target (or on 6.2.5 with the target marked bad), no journal left, every process a child of the new instance; after a SIGTERM, "+
			"exit 0, no temporary file and no process left.", n, strings.Join(args, " ")),
	}
	out, logPath, err := b.goTest("faults.log", env, args...)
	if errors.Is(err, context.Canceled) {
		return s, nil
	}
	sum, ok := parseFaultLine(out)
	if !ok {
		s.notes = append(s.notes, fmt.Sprintf("no summary line in the go test output (%v): %s", err, lastLines(out, 15)))
		return s, []goal{{fmt.Sprintf("fault injection, %d iterations: invariants hold after every SIGKILL", n), "did not run", false}}
	}
	t := table{header: []string{"iterations", "passed", "failed", "SIGKILLs", "journal step found at the kill", "cases", "took", "seed"}}
	t.rows = append(t.rows, []string{strconv.Itoa(sum.iterations), strconv.Itoa(sum.passed), strconv.Itoa(sum.failed), strconv.Itoa(sum.kills),
		sum.steps, sum.cases, sum.took, "`" + sum.seed + "`"})
	s.tables = append(s.tables, t)
	s.notes = append(s.notes, fmt.Sprintf("Result line: `%s`", sum.line),
		fmt.Sprintf("Replay: `LAVAVISOR_FAULT_SEED=%s LAVAVISOR_FAULT_ITERATIONS=%d go test -run FaultInjection -count=1 -v .`", sum.seed, sum.iterations),
		"\"none\": no upgrade in progress at the kill (before the change was seen, or after the upgrade or its rollback ended); "+
			"\"restart (k moved)\": k services already on the new release; \"start\": services started on a release linked at start, on probation.")
	if err != nil || sum.failed > 0 {
		kept := keepLog(logPath)
		s.notes = append(s.notes, fmt.Sprintf("FAILED: %s (%v); go test output kept in %s", sum.names, err, kept))
	}
	met := err == nil && sum.failed == 0 && sum.iterations == n
	return s, []goal{{fmt.Sprintf("fault injection, %d iterations: invariants hold after every SIGKILL", n),
		fmt.Sprintf("%d of %d passed, %d SIGKILLs", sum.passed, sum.iterations, sum.kills), met}}
}

// keepLog copies a log out of the work folder (removed at the end), for a look.
func keepLog(path string) string {
	body, err := os.ReadFile(path)
	if err != nil {
		return path
	}
	f, err := os.CreateTemp("", "lvbench-faults-*.log")
	if err != nil {
		return path
	}
	defer f.Close()
	if _, err := f.Write(body); err != nil {
		return path
	}
	return f.Name()
}

// lastLines is the end of out on one line, for a note.
func lastLines(out string, n int) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "`" + strings.Join(lines, " ⏎ ") + "`"
}
