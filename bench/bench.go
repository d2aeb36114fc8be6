package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// bench holds what every scenario shares.
type bench struct {
	ctx     context.Context
	log     io.Writer
	self    string // this binary: the children
	work    string // a fresh folder for this invocation; on every command line we start
	runs    int
	seconds float64
	settle  time.Duration // idle time before reading memory
	keep    bool          // keep the run folders
	repo    string        // the repository: `go test` scenarios run there

	crashSeconds    float64 // crash loop window
	crashRuns       int     // crash loop runs per supervisor
	upgradeRuns     int     // rolling upgrades measured by go test -bench
	faultIterations int     // fault injection iterations

	lavavisor runner
	peers     map[string]runner // installed peers by name
	next      int               // number of the next run folder
}

// newRun makes the folder of one start of rn in scenario.
func (b *bench) newRun(scenario string, rn runner) (*run, error) {
	b.next++
	dir := filepath.Join(b.work, fmt.Sprintf("%03d-%s-%s", b.next, scenario, strings.ToLower(rn.name())))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run folder: %w", err)
	}
	return &run{
		dir:         dir,
		tag:         filepath.Join(dir, "child"),
		self:        b.self,
		stopTimeout: 2 * time.Second,
		out:         filepath.Join(dir, "out.log"),
	}, nil
}

// start launches rn over r; the returned clean-up kills it and whatever of
// the run is left (a peer's orphans included), and removes the folder. A
// graceful stop is measured by the shutdown scenario only: elsewhere it would
// only cost time (supervisord takes a second or more).
func (b *bench) start(rn runner, r *run) (*proc, func(), error) {
	cmd, err := rn.command(r)
	if err != nil {
		return nil, nil, err
	}
	out, err := os.Create(r.out)
	if err != nil {
		return nil, nil, fmt.Errorf("output file: %w", err)
	}
	p, err := launch(cmd, out)
	if err != nil {
		out.Close()
		return nil, nil, err
	}
	cleanup := func() {
		p.kill()
		if err := killTagged(r.dir); err != nil {
			fmt.Fprintf(b.log, "clean-up of %s: %v\n", r.dir, err)
		}
		out.Close()
		if !b.keep {
			os.RemoveAll(r.dir)
		}
	}
	return p, cleanup, nil
}

// runners are LavaVisor then the installed peers among names, in that order:
// each round of a scenario runs them alternately.
func (b *bench) runners(names ...string) []runner {
	rs := []runner{b.lavavisor}
	for _, n := range names {
		if p, ok := b.peers[n]; ok {
			rs = append(rs, p)
		}
	}
	return rs
}

// missing names the peers among names that are not installed.
func (b *bench) missing(names ...string) []string {
	var out []string
	for _, n := range names {
		if _, ok := b.peers[n]; !ok {
			out = append(out, n)
		}
	}
	return out
}

// rounds runs once(rn) for every runner, alternately, b.runs times, and
// gathers the samples by runner name; a failed run is reported, not fatal.
func rounds[S any](b *bench, label string, rs []runner, once func(runner) (S, error), show func(S) string) (map[string][]S, []string) {
	return roundsN(b, b.runs, label, rs, once, show)
}

// roundsN is rounds with its own number of runs.
func roundsN[S any](b *bench, runs int, label string, rs []runner, once func(runner) (S, error), show func(S) string) (map[string][]S, []string) {
	samples := map[string][]S{}
	var failures []string
	for i := range runs {
		for _, rn := range rs {
			if b.ctx.Err() != nil {
				return samples, failures
			}
			s, err := once(rn)
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return samples, failures
				}
				msg := fmt.Sprintf("%s, %s, run %d: %v", label, rn.name(), i+1, err)
				fmt.Fprintln(b.log, "  FAILED "+msg)
				failures = append(failures, msg)
				continue
			}
			fmt.Fprintf(b.log, "  %s, %s, run %d/%d: %s\n", label, rn.name(), i+1, runs, show(s))
			samples[rn.name()] = append(samples[rn.name()], s)
		}
	}
	return samples, failures
}
