package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// crashGoalWindow is the window of issue 7's goal: at most 6 restarts in 30 s.
const crashGoalWindow = 30 * time.Second

type crashSample struct {
	restarts int
	offsets  []float64 // seconds from the first start to each restart
}

func (b *bench) crashLoop() (section, []goal) {
	peers := []string{"supervisord"}
	window := time.Duration(b.crashSeconds * float64(time.Second))
	s := section{
		title: "Crash loop",
		method: fmt.Sprintf("One child that exits 1 at once, every time (it appends the time of each start to a file first). The supervisor restarts it "+
			"for %g s from its launch; restarts = starts − 1. LavaVisor: `restart: always` (it backs off 1 s, doubling to 1 min, reset after a minute up); "+
			"supervisord: `autorestart=true`, `startsecs=0` (an exit after start-up is a normal end, restarted whatever its code). "+
			"%d run(s) each (`BENCH_CRASH_RUNS`; the window: `BENCH_CRASH_SECONDS`).", window.Seconds(), b.crashRuns),
	}
	if m := b.missing(peers...); len(m) > 0 {
		s.notes = append(s.notes, "not installed, left out: "+strings.Join(m, ", "))
	}
	rs := b.runners(peers...)
	samples, failures := roundsN(b, b.crashRuns, "crash loop", rs, func(rn runner) (crashSample, error) { return b.crashOnce(rn, window) },
		func(x crashSample) string { return fmt.Sprintf("%d restarts in %g s", x.restarts, window.Seconds()) })
	t := table{header: []string{"supervisor", fmt.Sprintf("restarts in %g s, median (min–max)", window.Seconds()), "per second", "restarts at (s after the first start), first run", "LavaVisor / peer"}}
	count := func(x crashSample) float64 { return float64(x.restarts) }
	lv := values(samples["LavaVisor"], count)
	for _, rn := range rs {
		ss := samples[rn.name()]
		n := values(ss, count)
		at := "—"
		if len(ss) > 0 {
			at = offsetsText(ss[0].offsets)
		}
		rate := "—"
		if len(n) > 0 {
			rate = fmt.Sprintf("%.1f", median(n)/window.Seconds())
		}
		t.rows = append(t.rows, []string{rn.name(), spread(n, 0), rate, at, ratio(rn.name(), lv, n)})
	}
	s.tables = append(s.tables, t)
	s.notes = append(s.notes, failures...)
	var goals []goal
	if len(lv) > 0 {
		worst := slices.Max(lv)
		if window >= crashGoalWindow {
			goals = append(goals, goal{fmt.Sprintf("crash loop ≤ 6 restarts in %g s", crashGoalWindow.Seconds()), fmt.Sprintf("%.0f in %g s", worst, window.Seconds()), worst <= 6})
		} else {
			s.notes = append(s.notes, fmt.Sprintf("The window is shortened to %g s: the goal (≤ 6 restarts in %g s) is not checked.", window.Seconds(), crashGoalWindow.Seconds()))
		}
	}
	return s, goals
}

func (b *bench) crashOnce(rn runner, window time.Duration) (crashSample, error) {
	r, err := b.newRun("crashloop", rn)
	if err != nil {
		return crashSample{}, err
	}
	r.restart = true
	starts := r.path("starts")
	r.children = []child{{"crash", childArgs("exit", "crash", r.tag, "-count", starts)}}
	p, cleanup, err := b.start(rn, r)
	if err != nil {
		return crashSample{}, err
	}
	defer cleanup()
	if err := sleepCtx(b.ctx, window); err != nil {
		return crashSample{}, err
	}
	if !p.running() {
		return crashSample{}, fmt.Errorf("supervisor exited (%s) within the window", p.exitText())
	}
	// Read before the clean-up kills the supervisor; no start after this counts.
	body, err := os.ReadFile(starts)
	if err != nil {
		return crashSample{}, fmt.Errorf("no start recorded: %w", err)
	}
	var times []int64
	for _, l := range strings.Fields(string(body)) {
		ns, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			return crashSample{}, fmt.Errorf("bad start line %q", l)
		}
		times = append(times, ns)
	}
	if len(times) == 0 {
		return crashSample{}, fmt.Errorf("the child never started")
	}
	x := crashSample{restarts: len(times) - 1}
	for _, ns := range times[1:] {
		x.offsets = append(x.offsets, float64(ns-times[0])/1e9)
	}
	return x, nil
}

// offsetsText lists up to 8 offsets, then how many more.
func offsetsText(xs []float64) string {
	if len(xs) == 0 {
		return "none"
	}
	var parts []string
	for i, x := range xs {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("… (%d more)", len(xs)-8))
			break
		}
		parts = append(parts, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(parts, ", ")
}
