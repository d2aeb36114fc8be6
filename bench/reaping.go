package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// orphans is how many orphans the child of the reaping scenario leaves, and
// reapWait how long after the last one the zombies are counted.
const (
	orphans  = 1000
	reapWait = 2 * time.Second
)

type reapSample struct {
	zombies int     // in the PID namespace, reapWait after the last orphan started
	procs   int     // processes in the namespace then, zombies included
	spawn   float64 // seconds from the launch until the last orphan had started
}

func (b *bench) reaping() (section, []goal) {
	peers := []string{"tini", "dumb-init"}
	s := section{
		title: "Reaping as PID 1",
		method: fmt.Sprintf("Each supervisor runs as PID 1 of a new PID namespace (`unshare --fork --pid --mount-proc --kill-child`) over one child "+
			"that leaves %d orphans: a shell forks, %d times, a subshell that starts `sleep 0.05` in the background and exits at once, so each "+
			"sleep is re-parented to PID 1 and exits 50 ms later; then the child creates its marker file and waits. %g s after the marker, "+
			"the zombies (state Z in /proc/PID/stat, read from the host) among the processes of that namespace (same /proc/PID/ns/pid as "+
			"the supervisor) are counted. tini runs as `tini -s -g -- sh script`, dumb-init as `dumb-init sh script` (the script starts the "+
			"child in the background and waits). The control row runs the child itself as PID 1 (it never waits for what it did not start): "+
			"it shows that the orphans were there to be reaped.", orphans, orphans, reapWait.Seconds()),
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		s.notes = append(s.notes, "unshare (util-linux) is not installed: scenario skipped")
		return s, nil
	}
	if m := b.missing(peers...); len(m) > 0 {
		s.notes = append(s.notes, "not installed, left out: "+strings.Join(m, ", "))
	}
	var rs []runner
	for _, rn := range b.runners(peers...) {
		rs = append(rs, pid1Runner{rn})
	}
	rs = append(rs, pid1Runner{bareRunner{}})
	samples, failures := rounds(b, "reaping", rs, func(rn runner) (reapSample, error) { return b.reapOnce(rn) },
		func(x reapSample) string {
			return fmt.Sprintf("%d zombies among %d processes, %d orphans started in %.2f s", x.zombies, x.procs, orphans, x.spawn)
		})
	t := table{header: []string{"PID 1", fmt.Sprintf("zombies %g s after the last orphan, max", reapWait.Seconds()), "median (min–max)",
		"processes left in the namespace, median", fmt.Sprintf("s to start %d orphans, median (min–max)", orphans)}}
	for _, rn := range rs {
		ss := samples[rn.name()]
		z := values(ss, func(x reapSample) float64 { return float64(x.zombies) })
		zmax := "—"
		if len(z) > 0 {
			zmax = fmt.Sprintf("%.0f", slices.Max(z))
		}
		t.rows = append(t.rows, []string{rn.name(), zmax, spread(z, 0),
			spread(values(ss, func(x reapSample) float64 { return float64(x.procs) }), 0),
			spread(values(ss, func(x reapSample) float64 { return x.spawn }), 2)})
	}
	s.tables = append(s.tables, t)
	s.notes = append(s.notes, failures...)
	var goals []goal
	if ss := samples["LavaVisor"]; len(ss) > 0 {
		z := slices.Max(values(ss, func(x reapSample) float64 { return float64(x.zombies) }))
		goals = append(goals, goal{fmt.Sprintf("no zombie as PID 1, %d orphans, after %g s", orphans, reapWait.Seconds()), fmt.Sprintf("%.0f", z), z == 0})
	}
	return s, goals
}

func (b *bench) reapOnce(rn runner) (reapSample, error) {
	r, err := b.newRun("reaping", rn)
	if err != nil {
		return reapSample{}, err
	}
	markers := r.path("markers")
	if err := os.Mkdir(markers, 0o755); err != nil {
		return reapSample{}, fmt.Errorf("marker folder: %w", err)
	}
	r.children = []child{{"o1", childArgs("orphans", "o1", r.tag, "-n", strconv.Itoa(orphans), "-marker", markers)}}
	p, cleanup, err := b.start(rn, r)
	if err != nil {
		return reapSample{}, err
	}
	defer cleanup()
	at, err := waitFiles(b.ctx, p, markers, 1, 60*time.Second)
	if err != nil {
		return reapSample{}, err
	}
	res := reapSample{spawn: at.Sub(p.started).Seconds()}
	// unshare forks the supervisor, which is PID 1 of the new namespace.
	sup := childOf(p.cmd.Process.Pid)
	if sup == 0 {
		return reapSample{}, fmt.Errorf("no process under unshare (pid %d)", p.cmd.Process.Pid)
	}
	if nspid := nsPID(sup); nspid != 1 {
		return reapSample{}, fmt.Errorf("the supervisor (host pid %d) is pid %d in its namespace, not 1", sup, nspid)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", sup))
	if err != nil {
		return reapSample{}, fmt.Errorf("PID namespace of %d: %w", sup, err)
	}
	if err := sleepCtx(b.ctx, reapWait); err != nil {
		return reapSample{}, err
	}
	if !p.running() {
		return reapSample{}, fmt.Errorf("supervisor exited (%s) before the zombies were counted", p.exitText())
	}
	res.procs, res.zombies = inNamespace(ns)
	return res, nil
}

// pid1Runner runs a runner's command as PID 1 of a new PID namespace.
type pid1Runner struct{ runner }

func (p pid1Runner) command(r *run) (*exec.Cmd, error) {
	inner, err := p.runner.command(r)
	if err != nil {
		return nil, err
	}
	// --kill-child: the namespace dies with unshare, which the bench kills.
	args := []string{"--fork", "--pid", "--mount-proc", "--kill-child"}
	if os.Geteuid() != 0 {
		// A new PID namespace needs root, or a user namespace of one's own.
		args = append([]string{"--user", "--map-root-user"}, args...)
	}
	args = append(append(args, inner.Path), inner.Args[1:]...)
	cmd := exec.Command("unshare", args...)
	cmd.Env, cmd.Dir = inner.Env, inner.Dir
	return cmd, nil
}

// bareRunner runs the one child of a run itself, no supervisor: the control.
type bareRunner struct{}

func (bareRunner) name() string { return "none (control: the child is PID 1)" }

func (bareRunner) command(r *run) (*exec.Cmd, error) {
	if len(r.children) != 1 {
		return nil, fmt.Errorf("no supervisor: one child only, not %d", len(r.children))
	}
	return exec.Command(r.self, r.children[0].args...), nil
}

func (bareRunner) childLogs(r *run) []string { return []string{r.out} }

func (bareRunner) version() string { return "—" }

// childOf is a child of pid (the first found in /proc), or 0.
func childOf(pid int) int {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, f := range stats {
			if _, ppid, ok := readStat(f); ok && ppid == pid {
				n, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0
}

// nsPID is pid's number in its own (innermost) PID namespace, 0 if unknown.
func nsPID(pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "NSpid" {
			f := strings.Fields(v)
			if len(f) == 0 {
				return 0
			}
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}

// inNamespace counts the processes whose PID namespace is ns, and the
// zombies among them.
func inNamespace(ns string) (procs, zombies int) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		dir := filepath.Dir(f)
		if l, err := os.Readlink(filepath.Join(dir, "ns", "pid")); err != nil || l != ns {
			continue
		}
		st, _, ok := readStat(f)
		if !ok {
			continue
		}
		procs++
		if st == 'Z' {
			zombies++
		}
	}
	return procs, zombies
}

// readStat reads the state and parent pid from a /proc/PID/stat file.
func readStat(path string) (state byte, ppid int, ok bool) {
	stat, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	// The command name in parentheses may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err == nil
}
