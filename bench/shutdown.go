package main

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"
)

// survivorWait is how long after the supervisor has gone its children are
// given to go too before the ones left count as survivors.
const survivorWait = 200 * time.Millisecond

type stopSample struct {
	ms        float64
	survivors int
	exit      string
}

func (b *bench) shutdown() (section, []goal) {
	peers := []string{"supervisord", "tini", "dumb-init"}
	s := section{
		title: "Shutdown",
		method: "10 children; once all are up (each creates a marker file) and 300 ms more, SIGTERM to the supervisor; the time runs from " +
			"the kill to the return of the wait for the supervisor. Survivors: children still alive (zombies aside) " +
			fmt.Sprintf("%g ms after the supervisor has gone; no ratio where the peer left survivors. ", float64(survivorWait.Milliseconds())) +
			"LavaVisor stops its children with its default SIGINT, supervisord with SIGTERM (`stopwaitsecs=2`, `stopasgroup`; the 10 programs " +
			"in one `[group:]`, without which supervisord stops them one after another: 10 that ignore SIGTERM took 22 s in a trial); " +
			"tini (`tini -s -g -- sh script`) and dumb-init (`dumb-init sh script`) run a shell that starts the 10 in its process group " +
			"and waits, and forward the SIGTERM to that group: they have no stop timeout.",
	}
	if m := b.missing(peers...); len(m) > 0 {
		s.notes = append(s.notes, "not installed, left out: "+strings.Join(m, ", "))
	}
	var goals []goal
	for _, ignore := range []bool{false, true} {
		kind, label := "exit at once on their stop signal", "shutdown, exiting children"
		if ignore {
			kind, label = "ignore SIGINT and SIGTERM (stop timeout 2 s)", "shutdown, ignoring children"
		}
		rs := b.runners(peers...)
		samples, failures := rounds(b, label, rs, func(rn runner) (stopSample, error) { return b.shutdownOnce(rn, ignore) },
			func(x stopSample) string {
				return fmt.Sprintf("%.1f ms, %d survivors, exit %s", x.ms, x.survivors, x.exit)
			})
		lv := values(samples["LavaVisor"], func(x stopSample) float64 { return x.ms })
		t := table{header: []string{"children", "supervisor", "time to exit, ms, median (min–max)", "survivors, max", "exit status", "LavaVisor / peer"}}
		for _, rn := range rs {
			ss := samples[rn.name()]
			ms := values(ss, func(x stopSample) float64 { return x.ms })
			surv := "—"
			if len(ss) > 0 {
				surv = fmt.Sprintf("%.0f", slices.Max(values(ss, func(x stopSample) float64 { return float64(x.survivors) })))
			}
			var exits []string
			for _, x := range ss {
				if !slices.Contains(exits, x.exit) {
					exits = append(exits, x.exit)
				}
			}
			r := ratio(rn.name(), lv, ms)
			if surv != "0" && surv != "—" {
				r = "n/a: children left running"
			}
			t.rows = append(t.rows, []string{"10 that " + kind, rn.name(), spread(ms, 1), surv, strings.Join(exits, ", "), r})
		}
		s.tables = append(s.tables, t)
		s.notes = append(s.notes, failures...)
		if ss := samples["LavaVisor"]; len(ss) > 0 {
			surv := slices.Max(values(ss, func(x stopSample) float64 { return float64(x.survivors) }))
			if !ignore {
				m := median(lv)
				goals = append(goals, goal{"shutdown of 10 exiting children < 100 ms", fmt.Sprintf("%.1f ms", m), m < 100})
			}
			goals = append(goals, goal{"no survivor, 10 children that " + kind, fmt.Sprintf("%.0f", surv), surv == 0})
		}
	}
	return s, goals
}

func (b *bench) shutdownOnce(rn runner, ignore bool) (stopSample, error) {
	name := "shutdown-exit"
	if ignore {
		name = "shutdown-ignore"
	}
	var extra []string
	if ignore {
		extra = append(extra, "-ignore")
	}
	const n = 10
	r, markers, err := b.waitingRun(name, rn, n, extra...)
	if err != nil {
		return stopSample{}, err
	}
	p, cleanup, err := b.start(rn, r)
	if err != nil {
		return stopSample{}, err
	}
	defer cleanup()
	if _, err := waitFiles(b.ctx, p, markers, n, 20*time.Second); err != nil {
		return stopSample{}, err
	}
	// Measure a running supervisor, not one still busy with its start-up.
	if err := sleepCtx(b.ctx, 300*time.Millisecond); err != nil {
		return stopSample{}, err
	}
	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return stopSample{}, fmt.Errorf("SIGTERM: %w", err)
	}
	if !p.waitFor(b.ctx, 30*time.Second) {
		if b.ctx.Err() != nil {
			return stopSample{}, b.ctx.Err()
		}
		return stopSample{}, fmt.Errorf("still running 30 s after SIGTERM")
	}
	res := stopSample{ms: float64(p.exited.Sub(t0).Microseconds()) / 1000, exit: p.exitText()}
	if err := sleepCtx(b.ctx, survivorWait); err != nil {
		return stopSample{}, err
	}
	res.survivors = len(tagged(r.tag))
	return res, nil
}
