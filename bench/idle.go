package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Idle memory and start-up share their set-up: n children that create a
// marker file once up and then wait for their stop signal.

type memSample struct{ rss, anon, file float64 } // MiB

func (b *bench) memory() (section, []goal) {
	peers := []string{"supervisord", "tini"}
	s := section{
		title: "Idle memory",
		method: fmt.Sprintf("The supervisor's own resident set (VmRSS in /proc/PID/status; children not counted), %g s after all its children are up, "+
			"and its two parts: anonymous (RssAnon: heap, stacks) and file-backed (RssFile: pages of the binary and libraries, or of the "+
			"Python interpreter and modules). For tini, the shell between it and the children is not counted either.", b.settle.Seconds()),
	}
	if m := b.missing(peers...); len(m) > 0 {
		s.notes = append(s.notes, "not installed, left out: "+strings.Join(m, ", "))
	}
	var goals []goal
	t := table{header: []string{"children", "supervisor", "VmRSS, MiB, median (min–max)", "RssAnon, MiB", "RssFile, MiB", "LavaVisor / peer (VmRSS)"}}
	for _, n := range []int{2, 20} {
		rs := b.runners(peers...)
		samples, failures := rounds(b, "memory, "+children(n), rs,
			func(rn runner) (memSample, error) { return b.memoryOnce(rn, n) },
			func(m memSample) string {
				return fmt.Sprintf("VmRSS %.1f MiB (anon %.1f, file %.1f)", m.rss, m.anon, m.file)
			})
		rss := func(m memSample) float64 { return m.rss }
		lv := values(samples["LavaVisor"], rss)
		for _, rn := range rs {
			ss := samples[rn.name()]
			t.rows = append(t.rows, []string{strconv.Itoa(n), rn.name(), spread(values(ss, rss), 1),
				spread(values(ss, func(m memSample) float64 { return m.anon }), 1),
				spread(values(ss, func(m memSample) float64 { return m.file }), 1),
				ratio(rn.name(), lv, values(ss, rss))})
		}
		s.notes = append(s.notes, failures...)
		if n == 2 && len(lv) > 0 {
			m := median(lv)
			goals = append(goals, goal{"idle memory with 2 children < 15 MB", fmt.Sprintf("%.1f MiB", m), m*1024*1024 < 15e6})
			// Issue 7: below the original LavaVisor's 70 MB (pod mode, one real provider).
			goals = append(goals, goal{"idle memory with 2 children < 70 MB (the original LavaVisor)", fmt.Sprintf("%.1f MiB", m), m*1024*1024 < 70e6})
		}
	}
	s.tables = append(s.tables, t)
	return s, goals
}

func (b *bench) memoryOnce(rn runner, n int) (memSample, error) {
	p, cleanup, err := b.startWaiting("memory", rn, n)
	if err != nil {
		return memSample{}, err
	}
	defer cleanup()
	if err := sleepCtx(b.ctx, b.settle); err != nil {
		return memSample{}, err
	}
	rss, anon, file, err := memKB(p.cmd.Process.Pid)
	if err != nil {
		return memSample{}, err
	}
	return memSample{float64(rss) / 1024, float64(anon) / 1024, float64(file) / 1024}, nil
}

func (b *bench) startup() (section, []goal) {
	peers := []string{"supervisord"}
	const n = 20
	s := section{
		title: "Start-up",
		method: fmt.Sprintf("Time from launching the supervisor (just before the fork) until all %d children have created their marker file "+
			"(the folder is polled every millisecond).", n),
	}
	rs := b.runners(peers...)
	samples, failures := rounds(b, "start-up", rs,
		func(rn runner) (float64, error) { return b.startupOnce(rn, n) },
		func(ms float64) string { return fmt.Sprintf("%.1f ms", ms) })
	t := table{header: []string{"children", "supervisor", "ms until all are up, median (min–max)", "LavaVisor / peer"}}
	for _, rn := range rs {
		t.rows = append(t.rows, []string{strconv.Itoa(n), rn.name(), spread(samples[rn.name()], 1), ratio(rn.name(), samples["LavaVisor"], samples[rn.name()])})
	}
	s.tables = append(s.tables, t)
	s.notes = append(s.notes, failures...)
	return s, nil
}

func (b *bench) startupOnce(rn runner, n int) (float64, error) {
	r, markers, err := b.waitingRun("startup", rn, n)
	if err != nil {
		return 0, err
	}
	p, cleanup, err := b.start(rn, r)
	if err != nil {
		return 0, err
	}
	defer cleanup()
	at, err := waitFiles(b.ctx, p, markers, n, 30*time.Second)
	if err != nil {
		return 0, err
	}
	return float64(at.Sub(p.started).Microseconds()) / 1000, nil
}

// waitingRun is a run of n children that create a marker in the returned
// folder once up, then wait for their stop signal; extra are more child flags.
func (b *bench) waitingRun(scenario string, rn runner, n int, extra ...string) (*run, string, error) {
	r, err := b.newRun(scenario, rn)
	if err != nil {
		return nil, "", err
	}
	markers := r.path("markers")
	if err := os.Mkdir(markers, 0o755); err != nil {
		return nil, "", fmt.Errorf("marker folder: %w", err)
	}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("c%d", i)
		r.children = append(r.children, child{id, childArgs("wait", id, r.tag, append([]string{"-marker", markers}, extra...)...)})
	}
	return r, markers, nil
}

// startWaiting starts rn over a waiting run and returns once every child is up.
func (b *bench) startWaiting(scenario string, rn runner, n int) (*proc, func(), error) {
	r, markers, err := b.waitingRun(scenario, rn, n)
	if err != nil {
		return nil, nil, err
	}
	p, cleanup, err := b.start(rn, r)
	if err != nil {
		return nil, nil, err
	}
	if _, err := waitFiles(b.ctx, p, markers, n, 20*time.Second); err != nil {
		cleanup()
		return nil, nil, err
	}
	return p, cleanup, nil
}
