package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The rolling upgrade measured: 3 providers move from 6.2.5 to 6.2.6 (placed
// locally, so no download is timed), polled every second as issue 5 asks.
const (
	benchServices  = 3
	benchPoll      = time.Second
	benchMinUptime = 200 * time.Millisecond
	benchOld       = "6.2.5"
	benchNew       = "6.2.6"
)

// BenchmarkRollingUpgrade runs the real binary and fake lavap releases. Times
// come from the fakes' FAKE_TIMELINE files (stamped inside the children) and
// from the moment each lavavisor log line is read here.
//
// The versions file is changed right after a poll has been logged, so detect
// is the worst case for the interval; react is the part that is LavaVisor's
// (the poll that saw the change → the first stop signal). gap is old exit →
// new start: the child's own stop time is outside it by construction, so all
// of it is LavaVisor's except launch, the exec and start-up of the fake
// itself, measured here without LavaVisor.
func BenchmarkRollingUpgrade(b *testing.B) {
	var runs []upgradeRun
	for range b.N {
		runs = append(runs, rollingUpgradeOnce(b))
	}
	reportUpgradeRuns(b, runs)
}

// upgradeRun holds the figures of one rolling upgrade.
type upgradeRun struct {
	detect, react time.Duration
	stops, gaps   []time.Duration // per service
	handoffs      []time.Duration // new start + min-uptime → next service's signal
	launch        time.Duration
	lastStart     time.Duration // first signal → last new start
	done          time.Duration // first signal → "upgrade done" logged
	floor         time.Duration // Σ (stop + min-uptime)
}

func rollingUpgradeOnce(b *testing.B) upgradeRun {
	b.StopTimer()
	dir := b.TempDir()
	root := filepath.Join(dir, ".lavavisor")
	placeRelease(b, root, benchOld)
	placeRelease(b, root, benchNew)
	if err := os.Symlink(filepath.Join("upgrades", "v"+benchOld), filepath.Join(root, "current")); err != nil {
		b.Fatal(err)
	}
	writeVersions(b, dir, benchOld)
	cfg := fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: %s\nstop-timeout: 5s\nmin-uptime: %s\nrolling: true\nlink: none\nservices:\n",
		dir, benchPoll, benchMinUptime)
	for i := range benchServices {
		name := fmt.Sprintf("p%d", i+1)
		cfg += fmt.Sprintf("  - name: %s\n    args: [rpcprovider, %s.yml, --from, op]\n    env: {FAKE_TIMELINE: %q}\n", name, name, timelinePath(dir, name))
	}
	if err := os.WriteFile(filepath.Join(root, "config.yml"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}

	lv := startStamped(b, "--directory", dir, "--log-level", "debug", "start")
	lv.waitFor(b, "every service up on "+benchOld, func() bool { return allStarted(dir, benchOld) })
	// Right after a poll, so that the change waits a full interval.
	polls := lv.count("chain polled")
	lv.waitFor(b, "a poll after the services are up", func() bool { return lv.count("chain polled") > polls })
	b.StartTimer()
	writeVersions(b, dir, benchNew)
	t0 := time.Now()
	lv.waitFor(b, "every service up on "+benchNew, func() bool { return allStarted(dir, benchNew) })
	b.StopTimer()
	lv.waitFor(b, `"upgrade done"`, func() bool { return !lv.first("upgrade done").IsZero() })
	lv.stop(b)

	run := analyseUpgrade(b, dir, t0, lv.first("chain polled", ".."+benchNew), lv.first("upgrade done"))
	run.launch = measureLaunch(b, dir)
	return run
}

// analyseUpgrade reads the timelines of one run; it fails the benchmark when
// the upgrade was not a clean rolling one.
func analyseUpgrade(b *testing.B, dir string, t0, polled, done time.Time) upgradeRun {
	type service struct{ signal, exit, start time.Time }
	var svcs []service
	for i := range benchServices {
		name := fmt.Sprintf("p%d", i+1)
		ev := readTimeline(b, timelinePath(dir, name))
		var s service
		var oldPID, starts int
		for _, e := range ev {
			switch {
			case e.event == "start" && e.version == benchOld:
				oldPID, starts = e.pid, starts+1
			case e.event == "start" && e.version == benchNew:
				s.start, starts = e.at, starts+1
			case e.event == "signal" && e.pid == oldPID && s.signal.IsZero():
				s.signal = e.at
			case e.event == "exit" && e.pid == oldPID:
				s.exit = e.at
			}
		}
		if starts != 2 || s.signal.IsZero() || s.exit.IsZero() || s.start.IsZero() || s.start.Before(s.exit) {
			b.Fatalf("%s did not move cleanly from %s to %s: %+v", name, benchOld, benchNew, ev)
		}
		svcs = append(svcs, s)
	}
	slices.SortFunc(svcs, func(x, y service) int { return x.signal.Compare(y.signal) })
	first, last := svcs[0], svcs[len(svcs)-1]
	if polled.IsZero() || done.IsZero() {
		b.Fatal("lavavisor did not log the poll that saw the change or the end of the upgrade")
	}
	run := upgradeRun{
		detect:    first.signal.Sub(t0),
		react:     first.signal.Sub(polled),
		lastStart: last.start.Sub(first.signal),
		done:      done.Sub(first.signal),
	}
	for i, s := range svcs {
		run.stops = append(run.stops, s.exit.Sub(s.signal))
		run.gaps = append(run.gaps, s.start.Sub(s.exit))
		run.floor += s.exit.Sub(s.signal) + benchMinUptime
		if i > 0 {
			// LavaVisor counts min-uptime from its fork, a little before the
			// child's own start stamp: h may be below zero by up to a launch.
			h := s.signal.Sub(svcs[i-1].start.Add(benchMinUptime))
			if h < -benchMinUptime/2 {
				b.Fatalf("not rolling: service %d stopped %s before the previous one had stayed up %s", i+1, -h, benchMinUptime)
			}
			run.handoffs = append(run.handoffs, h)
		}
	}
	return run
}

// measureLaunch times what LavaVisor cannot help in a gap: exec of the new
// release up to its first instruction in main (mean of a few launches).
func measureLaunch(b *testing.B, dir string) time.Duration {
	const n = 5
	path := filepath.Join(dir, "launch.timeline")
	var sum time.Duration
	for range n {
		os.Remove(path)
		cmd := exec.Command(filepath.Join(fakeBuilds, benchNew, "lavap"), "rpcprovider")
		cmd.Env = append(os.Environ(), "FAKE_TIMELINE="+path, "FAKE_EXIT=0")
		before := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		ev := readTimeline(b, path)
		if len(ev) == 0 || ev[0].event != "start" {
			b.Fatalf("launch timeline: %+v", ev)
		}
		sum += ev[0].at.Sub(before)
	}
	return sum / n
}

func reportUpgradeRuns(b *testing.B, runs []upgradeRun) {
	var detect, react, launch, lastStart, done, floor []time.Duration
	var stops, gaps, handoffs []time.Duration
	for _, r := range runs {
		detect, react, launch = append(detect, r.detect), append(react, r.react), append(launch, r.launch)
		lastStart, done, floor = append(lastStart, r.lastStart), append(done, r.done), append(floor, r.floor)
		stops, gaps, handoffs = append(stops, r.stops...), append(gaps, r.gaps...), append(handoffs, r.handoffs...)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(mean(detect)), "detect-ms")
	b.ReportMetric(ms(mean(react)), "react-ms")
	b.ReportMetric(ms(mean(stops)), "stop-ms")
	b.ReportMetric(ms(mean(gaps)), "gap-mean-ms")
	b.ReportMetric(ms(slices.Max(gaps)), "gap-max-ms")
	b.ReportMetric(ms(mean(launch)), "launch-ms")
	b.ReportMetric(ms(mean(handoffs)), "handoff-ms")
	b.ReportMetric(ms(mean(lastStart)), "last-start-ms")
	b.ReportMetric(ms(mean(done)), "done-ms")
	b.ReportMetric(ms(mean(floor)), "stop+minup-sum-ms")
	b.ReportMetric(ms(mean(done)-mean(floor)), "overhead-ms")
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func timelinePath(dir, service string) string { return filepath.Join(dir, service+".timeline") }

// placeRelease copies a fake build into upgrades/v<version>/lavap.
func placeRelease(b *testing.B, root, version string) {
	body, err := os.ReadFile(filepath.Join(fakeBuilds, version, "lavap"))
	if err != nil {
		b.Fatal(err)
	}
	rel := filepath.Join(root, "upgrades", "v"+version)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "lavap"), body, 0o755); err != nil {
		b.Fatal(err)
	}
}

// writeVersions replaces the file:// source atomically, min and target alike.
func writeVersions(b *testing.B, dir, v string) {
	body := fmt.Sprintf("provider_min: %s\nprovider_target: %s\nconsumer_min: %s\nconsumer_target: %s\n", benchOld, v, benchOld, v)
	tmp := filepath.Join(dir, "versions.yml.tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "versions.yml")); err != nil {
		b.Fatal(err)
	}
}

// timelineEvent is one FAKE_TIMELINE line: <unix-nanos> <event> <pid> <version>.
type timelineEvent struct {
	at      time.Time
	event   string
	pid     int
	version string
}

func readTimeline(b *testing.B, path string) []timelineEvent {
	body, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var out []timelineEvent
	for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		var ns int64
		var e timelineEvent
		if _, err := fmt.Sscanf(l, "%d %s %d %s", &ns, &e.event, &e.pid, &e.version); err != nil {
			b.Fatalf("%s: bad line %q: %v", path, l, err)
		}
		e.at = time.Unix(0, ns)
		out = append(out, e)
	}
	return out
}

// allStarted reports whether every service's last start is on version.
func allStarted(dir, version string) bool {
	for i := range benchServices {
		body, _ := os.ReadFile(timelinePath(dir, fmt.Sprintf("p%d", i+1)))
		last := ""
		for _, l := range strings.Split(string(body), "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[1] == "start" {
				last = f[3]
			}
		}
		if last != version {
			return false
		}
	}
	return true
}

// stampedProc is a running lavavisor whose output lines are timed as they
// are read.
type stampedProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  []stampedLine
}

type stampedLine struct {
	at   time.Time
	text string
}

func startStamped(b *testing.B, args ...string) *stampedProc {
	p := &stampedProc{cmd: exec.Command(lavavisorBin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "NO_COLOR=1")
	pipe, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, stampedLine{time.Now(), sc.Text()})
			p.mu.Unlock()
		}
		p.cmd.Wait()
		close(p.done)
	}()
	b.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if b.Failed() {
			b.Logf("lavavisor output:\n%s", p.text())
		}
	})
	return p
}

func (p *stampedProc) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var sb strings.Builder
	for _, l := range p.out {
		sb.WriteString(l.text + "\n")
	}
	return sb.String()
}

func (p *stampedProc) count(s string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.out {
		if strings.Contains(l.text, s) {
			n++
		}
	}
	return n
}

// first returns when the first line holding every part was read, or zero.
func (p *stampedProc) first(parts ...string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.out {
		if !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(l.text, s) }) {
			return l.at
		}
	}
	return time.Time{}
}

func (p *stampedProc) waitFor(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		select {
		case <-p.done:
			b.Fatalf("lavavisor exited while waiting for %s", what)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *stampedProc) stop(b *testing.B) {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		b.Fatal("lavavisor did not exit on SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		b.Fatalf("lavavisor exited %d on SIGTERM", code)
	}
}

// BenchmarkProposalPrefetch measures what the pre-fetch ahead of the vote
// (SPEC §8) saves: one provider moves from 6.2.5 to 6.2.6, downloaded from a
// local release server. With prefetch on, a proposal for 6.2.6 is in voting
// first and its release pre-fetched; then the vote "passes". Reported:
// visible-to-start-ms, from the poll that saw the change (its log line read
// here) to the new process's own start stamp, and requests-after-change to
// the release server.
func BenchmarkProposalPrefetch(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("prefetch=%v", on), func(b *testing.B) {
			var took []time.Duration
			requests := 0
			for range b.N {
				d, n := prefetchUpgradeOnce(b, on)
				took, requests = append(took, d), requests+n
			}
			b.ReportMetric(float64(mean(took))/float64(time.Millisecond), "visible-to-start-ms")
			b.ReportMetric(float64(requests)/float64(b.N), "requests-after-change")
		})
	}
}

func prefetchUpgradeOnce(b *testing.B, prefetch bool) (time.Duration, int) {
	b.StopTimer()
	rs := newReleaseServer(b)
	dir := b.TempDir()
	root := filepath.Join(dir, ".lavavisor")
	placeRelease(b, root, benchOld)
	if err := os.Symlink(filepath.Join("upgrades", "v"+benchOld), filepath.Join(root, "current")); err != nil {
		b.Fatal(err)
	}
	writeVersions(b, dir, benchOld)
	timeline := timelinePath(dir, "p1")
	cfg := fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: 200ms\nstop-timeout: 5s\nmin-uptime: %s\nlink: none\n"+
		"auto-download: true\nprefetch: %v\ndownload:\n  url: %s/v{version}/lavap-v{version}-{os}-{arch}\n  checksums: %s/v{version}/sha256sum.txt\n"+
		"services:\n  - name: p1\n    args: [rpcprovider, p1.yml, --from, op]\n    env: {FAKE_TIMELINE: %q}\n",
		dir, benchMinUptime, prefetch, rs.URL, rs.URL, timeline)
	if err := os.WriteFile(filepath.Join(root, "config.yml"), []byte(cfg), 0o644); err != nil {
		b.Fatal(err)
	}
	lv := startStamped(b, "--directory", dir, "start")
	started := func(v string) func() bool {
		return func() bool {
			for _, e := range readTimelineIfAny(timeline) {
				if e.event == "start" && e.version == v {
					return true
				}
			}
			return false
		}
	}
	lv.waitFor(b, "p1 up on "+benchOld, started(benchOld))
	if prefetch {
		body := fmt.Sprintf("provider_min: %s\nprovider_target: %s\nconsumer_min: %s\nconsumer_target: %s\nproposals:\n  - id: 13\n    provider_target: %s\n    consumer_target: %s\n    voting_end_time: %s\n",
			benchOld, benchOld, benchOld, benchOld, benchNew, benchNew, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
		if err := os.WriteFile(filepath.Join(dir, "versions.yml"), []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
		lv.waitFor(b, "the release pre-fetched", func() bool { return lv.count("release installed") == 1 })
	}
	before := len(rs.requests())
	b.StartTimer()
	writeVersions(b, dir, benchNew)
	lv.waitFor(b, "p1 up on "+benchNew, started(benchNew))
	b.StopTimer()
	seen := lv.first("chain versions changed", "provider_target="+benchNew)
	var start time.Time
	for _, e := range readTimelineIfAny(timeline) {
		if e.event == "start" && e.version == benchNew {
			start = e.at
		}
	}
	after := len(rs.requests()) - before
	lv.stop(b)
	if seen.IsZero() || start.IsZero() {
		b.Fatal("the change or the new start was not seen")
	}
	return start.Sub(seen), after
}

// readTimelineIfAny is readTimeline of a file that may not be complete yet.
func readTimelineIfAny(path string) []timelineEvent {
	body, _ := os.ReadFile(path)
	var out []timelineEvent
	for _, l := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		var ns int64
		var e timelineEvent
		if _, err := fmt.Sscanf(l, "%d %s %d %s", &ns, &e.event, &e.pid, &e.version); err == nil {
			e.at = time.Unix(0, ns)
			out = append(out, e)
		}
	}
	return out
}
