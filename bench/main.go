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

// scenario is one part of the report; goals are checked on LavaVisor's figures.
type scenario struct {
	name string
	run  func(*bench) (section, []goal)
}

func scenarios() []scenario {
	return []scenario{
		{"throughput", (*bench).throughput},
		{"shutdown", (*bench).shutdown},
		{"memory", (*bench).memory},
		{"startup", (*bench).startup},
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
	repo := fs.String("repo", ".", "the repository, for the commit measured")
	runs := fs.Int("runs", envInt("BENCH_RUNS", 3), "runs of each supervisor per figure (env BENCH_RUNS)")
	seconds := fs.Float64("seconds", envFloat("BENCH_SECONDS", 5), "seconds each log writer writes (env BENCH_SECONDS)")
	settle := fs.Duration("settle", 2*time.Second, "idle time before memory is read")
	only := fs.String("scenarios", envString("BENCH_SCENARIOS", strings.Join(names, ",")), "comma-separated scenarios to run (env BENCH_SCENARIOS)")
	keep := fs.Bool("keep", false, "keep the run folders (configs, outputs) for a look")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *lavavisor == "" || *runs < 1 || *seconds <= 0 {
		fmt.Fprintln(os.Stderr, "bench: need -lavavisor PATH, runs ≥ 1 and seconds > 0")
		return 2
	}
	var chosen []scenario
	for _, n := range strings.Split(*only, ",") {
		i := slices.IndexFunc(scenarios(), func(s scenario) bool { return s.name == strings.TrimSpace(n) })
		if i < 0 {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q; known: %s\n", n, strings.Join(names, ", "))
			return 2
		}
		chosen = append(chosen, scenarios()[i])
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
		runs: *runs, seconds: *seconds, settle: *settle, keep: *keep,
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
	var sections []section
	var goals []goal
	start := time.Now()
	for _, s := range chosen {
		fmt.Fprintf(os.Stderr, "%s:\n", s.name)
		t0 := time.Now()
		sec, g := s.run(b)
		fmt.Fprintf(os.Stderr, "%s took %s\n", s.name, time.Since(t0).Round(100*time.Millisecond))
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; report not written")
			return 130
		}
		sections = append(sections, sec)
		goals = append(goals, g...)
	}
	doc := render(machine, b, sections, goals, time.Since(start))
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

func render(machine [][2]string, b *bench, sections []section, goals []goal, took time.Duration) string {
	var d strings.Builder
	d.WriteString("# Benchmarks\n\n")
	d.WriteString("Written by `bench/run`: do not edit by hand, run it again. LavaVisor and its peers run the same children " +
		"(one Go program, `bench child`), alternately: LavaVisor, then each peer, repeated. Figures are the median of the runs " +
		"and, in brackets, the lowest and highest; the ratio is LavaVisor's median over the peer's. The machine is shared: " +
		"read the spreads before the medians.\n\n")
	fmt.Fprintf(&d, "Reproduce: `bench/run` (here: %d runs each, writers %g s; `BENCH_RUNS`, `BENCH_SECONDS` and `BENCH_SCENARIOS` tune it). Took %s.\n\n",
		b.runs, b.seconds, took.Round(time.Second))
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
