// Command bench measures LavaVisor next to the programs operators would
// otherwise run (supervisord, tini, dumb-init): the same children, runs
// alternated on the same machine, medians and spreads written to
// docs/BENCHMARKS.md. bench/run builds it and LavaVisor, installs the peers
// and runs it; `bench child ...` is the child every supervisor runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() { os.Exit(realMain(os.Args[1:])) }

// scenario is one part of the report; goals are checked on LavaVisor's
// figures. title is its section's heading: a scenario not run keeps its
// section of the previous report under that heading.
type scenario struct {
	name  string
	title string
	run   func(*bench) (section, []goal)
}

func scenarios() []scenario {
	return []scenario{
		{"throughput", "Log throughput to a file", (*bench).throughput},
		{"logsdir", "Log throughput to log files (logs-dir)", (*bench).logsDir},
		{"shutdown", "Shutdown", (*bench).shutdown},
		{"reaping", "Reaping as PID 1", (*bench).reaping},
		{"crashloop", "Crash loop", (*bench).crashLoop},
		{"memory", "Idle memory", (*bench).memory},
		{"startup", "Start-up", (*bench).startup},
		{"upgrade", "Upgrade timing (go test -bench RollingUpgrade)", (*bench).upgrade},
		{"faults", "Fault injection (go test -run FaultInjection)", (*bench).faults},
	}
}

func realMain(args []string) int {
	if len(args) > 0 && args[0] == "child" {
		return runChild(args[1:])
	}
	var names []string
	for _, s := range scenarios() {
		names = append(names, s.name)
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	lavavisor := fs.String("lavavisor", "", "the lavavisor binary to measure")
	out := fs.String("out", "docs/BENCHMARKS.md", "report file")
	repo := fs.String("repo", ".", "the repository: the commit measured, and where the go test scenarios run")
	runs := fs.Int("runs", envInt("BENCH_RUNS", defRuns), "runs of each supervisor per figure (env BENCH_RUNS)")
	seconds := fs.Float64("seconds", envFloat("BENCH_SECONDS", defSeconds), "seconds each log writer writes (env BENCH_SECONDS)")
	settle := fs.Duration("settle", 2*time.Second, "idle time before memory is read")
	only := fs.String("scenarios", envString("BENCH_SCENARIOS", strings.Join(names, ",")), "comma-separated scenarios to run (env BENCH_SCENARIOS)")
	keep := fs.Bool("keep", false, "keep the run folders (configs, outputs) for a look")
	crashSeconds := fs.Float64("crash-seconds", envFloat("BENCH_CRASH_SECONDS", defCrashSeconds), "crash loop: seconds of restarts counted (env BENCH_CRASH_SECONDS)")
	crashRuns := fs.Int("crash-runs", envInt("BENCH_CRASH_RUNS", defCrashRuns), "crash loop: runs of each supervisor (env BENCH_CRASH_RUNS)")
	upgradeRuns := fs.Int("upgrade-runs", envInt("BENCH_UPGRADE_RUNS", defUpgradeRuns), "upgrades measured by go test -bench RollingUpgrade (env BENCH_UPGRADE_RUNS)")
	faultIterations := fs.Int("fault-iterations", envInt("BENCH_FAULT_ITERATIONS", defFaultIterations), "fault injection iterations (env BENCH_FAULT_ITERATIONS)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *lavavisor == "" || *runs < 1 || *seconds <= 0 || *crashSeconds <= 0 || *crashRuns < 1 || *upgradeRuns < 1 || *faultIterations < 1 {
		fmt.Fprintln(os.Stderr, "bench: need -lavavisor PATH, runs ≥ 1, seconds > 0, crash-seconds > 0, and crash-runs, upgrade-runs and fault-iterations ≥ 1")
		return 2
	}
	chosen := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(names, n) {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q; known: %s\n", n, strings.Join(names, ", "))
			return 2
		}
		chosen[n] = true
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: own path: %v\n", err)
		return 1
	}
	lv, err := filepath.Abs(*lavavisor)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	work, err := os.MkdirTemp("", "lvbench.")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: work folder: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{
		ctx: ctx, log: os.Stderr, self: self, work: work,
		runs: *runs, seconds: *seconds, settle: *settle, keep: *keep, repo: *repo,
		crashSeconds: *crashSeconds, crashRuns: *crashRuns, upgradeRuns: *upgradeRuns, faultIterations: *faultIterations,
		lavavisor: lavavisorRunner{bin: lv},
		peers:     installedPeers(),
	}
	// Every process of this bench has the work folder on its command line:
	// whatever is left, by a failure or a Ctrl-C, is found and killed here.
	defer func() {
		if err := killTagged(work); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
		if !*keep {
			os.RemoveAll(work)
		}
	}()

	machine := describeMachine(b, *repo)
	prev := readPrevious(*out)
	var sections []section
	var goals []goalRow
	var kept []string
	start := time.Now()
	for _, s := range scenarios() {
		if !chosen[s.name] {
			if body, ok := prev.sections[s.title]; ok {
				sections = append(sections, section{title: s.title, kept: keptBody(body, prev.date)})
				goals = append(goals, prev.goals[s.name]...)
				kept = append(kept, s.name)
			}
			continue
		}
		fmt.Fprintf(os.Stderr, "%s:\n", s.name)
		t0 := time.Now()
		sec, g := s.run(b)
		fmt.Fprintf(os.Stderr, "%s took %s\n", s.name, time.Since(t0).Round(100*time.Millisecond))
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; report not written")
			return 130
		}
		sec.title = s.title
		for _, x := range g {
			goals = append(goals, goalRow{scenario: s.name, goal: x})
		}
		sections = append(sections, sec)
	}
	g := func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
	settings := settingsText([]setting{
		{"BENCH_RUNS", strconv.Itoa(*runs), strconv.Itoa(defRuns)},
		{"BENCH_SECONDS", g(*seconds), g(defSeconds)},
		{"BENCH_CRASH_SECONDS", g(*crashSeconds), g(defCrashSeconds)},
		{"BENCH_CRASH_RUNS", strconv.Itoa(*crashRuns), strconv.Itoa(defCrashRuns)},
		{"BENCH_UPGRADE_RUNS", strconv.Itoa(*upgradeRuns), strconv.Itoa(defUpgradeRuns)},
		{"BENCH_FAULT_ITERATIONS", strconv.Itoa(*faultIterations), strconv.Itoa(defFaultIterations)},
		{"BENCH_SCENARIOS", *only, strings.Join(names, ",")},
	})
	doc := render(machine, b, settings, sections, goals, kept, time.Since(start))
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "bench: write report: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "wrote %s in %s\n", *out, time.Since(start).Round(time.Second))
	fmt.Print(doc)
	return 0
}

// installedPeers are the peers found on PATH.
func installedPeers() map[string]runner {
	peers := map[string]runner{}
	if p, err := exec.LookPath("supervisord"); err == nil {
		peers["supervisord"] = supervisordRunner{bin: p}
	}
	if p, err := exec.LookPath("tini"); err == nil {
		// -s: a child subreaper, as LavaVisor makes itself when not PID 1.
		peers["tini"] = initRunner{label: "tini", bin: p, args: []string{"-s", "-g", "--"}}
	}
	if p, err := exec.LookPath("dumb-init"); err == nil {
		peers["dumb-init"] = initRunner{label: "dumb-init", bin: p}
	}
	return peers
}

func describeMachine(b *bench, repo string) [][2]string {
	cpus := strconv.Itoa(runtime.NumCPU())
	if out, err := exec.Command("nproc").Output(); err == nil {
		cpus = strings.TrimSpace(string(out))
	}
	model := "?"
	if info, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(info), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := strings.TrimSpace(readOr("/proc/sys/kernel/osrelease", "?"))
	load := strings.Join(strings.Fields(readOr("/proc/loadavg", "? ? ?"))[:3], " ")
	rows := [][2]string{
		{"date", time.Now().UTC().Format("2006-01-02 15:04 UTC")},
		{"CPU", fmt.Sprintf("%s × %s (nproc)", model, cpus)},
		{"kernel", kernel},
		{"Go", runtime.Version()},
		{"load average at start (1, 5, 15 min)", load},
		{"LavaVisor", lavavisorRevision(repo) + ", `lavavisor version`: " + b.lavavisor.version()},
	}
	for _, n := range []string{"supervisord", "tini", "dumb-init"} {
		v := "not installed"
		if p, ok := b.peers[n]; ok {
			v = p.version()
		}
		rows = append(rows, [2]string{n, v})
	}
	return rows
}

func lavavisorRevision(repo string) string {
	rev, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "no commit yet"
	}
	s := "commit " + strings.TrimSpace(string(rev))
	if st, err := exec.Command("git", "-C", repo, "status", "--porcelain").Output(); err == nil && len(st) > 0 {
		s += " with uncommitted changes"
	}
	return s
}

// render writes the report; settings are the environment that reproduces
// this run's choices, "" for the defaults.
func render(machine [][2]string, b *bench, settings string, sections []section, goals []goalRow, kept []string, took time.Duration) string {
	var d strings.Builder
	d.WriteString("# Benchmarks\n\n")
	d.WriteString("Written by `bench/run`: do not edit by hand, run it again. LavaVisor and its peers run the same children " +
		"(one Go program, `bench child`), alternately: LavaVisor, then each peer, repeated. Figures are the median of the runs " +
		"and, in brackets, the lowest and highest; the ratio is LavaVisor's median over the peer's. The machine is shared: " +
		"read the spreads before the medians.\n\n")
	fmt.Fprintf(&d, "Reproduce: `%sbench/run` (%d runs each; `BENCH_RUNS`, `BENCH_SECONDS`, `BENCH_CRASH_SECONDS`, `BENCH_CRASH_RUNS`, "+
		"`BENCH_UPGRADE_RUNS`, `BENCH_FAULT_ITERATIONS` and `BENCH_SCENARIOS` tune it: see bench/README.md). Took %s.\n\n",
		settings, b.runs, took.Round(time.Second))
	if len(kept) > 0 {
		fmt.Fprintf(&d, "Not run this time, kept from an earlier report (their goals too, where that report listed goals by scenario): %s. "+
			"The machine below is this run's.\n\n", strings.Join(kept, ", "))
	}
	t := table{header: []string{"machine", ""}}
	for _, r := range machine {
		t.rows = append(t.rows, []string{r[0], r[1]})
	}
	t.markdown(&d)
	if len(goals) > 0 {
		d.WriteString("## Goals\n\n")
		goalsTable(goals).markdown(&d)
	}
	for _, s := range sections {
		s.markdown(&d)
	}
	return d.String()
}

// The defaults of the tunable figures; bench/README.md names them too.
const (
	defRuns            = 3
	defSeconds         = 5.0
	defCrashSeconds    = 30.0
	defCrashRuns       = 1
	defUpgradeRuns     = 3
	defFaultIterations = 50
)

// setting is one tunable figure, as its bench/run environment variable.
type setting struct{ env, value, def string }

// settingsText is the environment of bench/run that gives this run's
// choices where they are not the defaults, e.g. "BENCH_RUNS=5 ".
func settingsText(settings []setting) string {
	var parts []string
	for _, s := range settings {
		if s.value != s.def {
			parts = append(parts, s.env+"="+s.value)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, " ") + " "
}

func readOr(path, fallback string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fallback
	}
	return string(b)
}

func envString(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func envInt(key string, fallback int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return fallback
}

func envFloat(key string, fallback float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(key), 64); err == nil {
		return f
	}
	return fallback
}
