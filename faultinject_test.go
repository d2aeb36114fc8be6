package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Fault injection (issue 7, point 3): LavaVisor is killed with SIGKILL at a
// random moment of a rolling upgrade of 3 services and started again, and the
// crash-safety invariants of issue 5 (point 6) are checked after every kill.
// LAVAVISOR_FAULT_ITERATIONS sets the number of iterations (default 5, as in
// CI; bench/run runs 50); LAVAVISOR_FAULT_SEED replays the random choices of
// a logged run (the timing of the machine is not replayed).
// simulation_test.go composes this kill with the other faults of SPEC §6.8.

// faultServices are the providers of every iteration.
var faultServices = []string{"p1", "p2", "p3"}

// faultCase is one iteration: what the chain asks and when, where the
// releases come from, and when LavaVisor is killed.
type faultCase struct {
	kind      string
	served    bool          // releases downloaded from a release server, not placed
	crash     bool          // 6.2.6 exits 1 soon after its start: a rollback
	crashWait time.Duration // how soon
	crashOnly string        // the one service it crashes for (the others run), or "" for all
	fetchWait time.Duration // served: the release server's delay before a binary
	slowStop  time.Duration // when set, services ignore their stop signal and are killed after this stop-timeout
	minUptime time.Duration
	first     faultChange
	second    *faultChange    // a later change of the versions, or nil
	kills     []time.Duration // first after the trigger, next after a restart
}

type faultChange struct {
	after       time.Duration // since the trigger
	min, target string
}

func (c faultCase) String() string {
	s := fmt.Sprintf("%s, served=%v (delay %s), min-uptime %s, slow stop %s, versions %s..%s", c.kind, c.served, c.fetchWait, c.minUptime, c.slowStop, c.first.min, c.first.target)
	if c.crash {
		who := "every service"
		if c.crashOnly != "" {
			who = c.crashOnly
		}
		s += fmt.Sprintf(", 6.2.6 crashes %s after its start for %s", c.crashWait, who)
	}
	if c.second != nil {
		s += fmt.Sprintf(" then %s..%s after %s", c.second.min, c.second.target, c.second.after)
	}
	return s + fmt.Sprintf(", SIGKILL after %v", c.kills)
}

// last is the change in effect at the end.
func (c faultCase) last() faultChange {
	if c.second != nil {
		return *c.second
	}
	return c.first
}

// wantBad: the final target is the crashing release, so the services must end
// on the release they ran before and the target be marked bad.
func (c faultCase) wantBad() bool { return c.crash && c.last().target == "6.2.6" }

func randomFaultCase(rng *rand.Rand) faultCase {
	ms := func(lo, hi int) time.Duration { return time.Duration(lo+rng.IntN(hi-lo+1)) * time.Millisecond }
	c := faultCase{served: rng.IntN(2) == 0, minUptime: ms(150, 300)}
	// Wider windows for the kill to land in: a slow download, slow stops
	// (which also make a rollback take time).
	if c.served {
		c.fetchWait = ms(0, 400)
	}
	if rng.IntN(2) == 0 {
		c.slowStop = ms(100, 300)
	}
	later := func(min, target string) *faultChange { return &faultChange{ms(100, 800), min, target} }
	switch rng.IntN(6) {
	case 0:
		c.kind, c.first = "raise", faultChange{0, "6.2.5", "6.2.6"}
	case 1:
		c.kind, c.first, c.second = "double", faultChange{0, "6.2.5", "6.2.6"}, later("6.2.5", "6.2.7")
	case 2:
		c.kind, c.crash, c.first = "crash", true, faultChange{0, "6.2.5", "6.2.6"}
	case 3:
		c.kind, c.crash, c.first, c.second = "crash-then-fix", true, faultChange{0, "6.2.5", "6.2.6"}, later("6.2.5", "6.2.7")
	case 4:
		// 6.2.6 is below the new minimum and never ran: it must never run.
		c.kind, c.first = "min-jump", faultChange{0, "6.2.7", "6.2.7"}
	case 5:
		// The rollback goes below the minimum: allowed, it was running.
		c.kind, c.crash, c.first = "crash-below-min", true, faultChange{0, "6.2.6", "6.2.6"}
	}
	if c.crash {
		c.crashWait = ms(0, 150)
		// The crash must come before the min-uptime whatever the machine's
		// speed: with both drawn from close ranges, an exec of sh and sleep
		// on a busy machine pushed the crash past it (no rollback, and the
		// case never settled). A second of margin, no extra draw: seeds
		// replay the same choices.
		c.minUptime += time.Second
		if rng.IntN(2) == 0 {
			c.crashOnly = faultServices[rng.IntN(len(faultServices))]
		}
	}
	c.kills = []time.Duration{ms(0, 1500)}
	if rng.IntN(3) == 0 {
		c.kills = append(c.kills, ms(0, 1500))
	}
	return c
}

// faultTally counts the outcomes of all iterations.
type faultTally struct {
	mu      sync.Mutex
	passed  int
	failed  []string
	atStep  map[string]int // journal step found in state.json after each SIGKILL
	kinds   map[string]int
	elapsed time.Duration
}

func (ft *faultTally) summary(n int, seed uint64) string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	steps := slices.Sorted(maps.Keys(ft.atStep))
	kills := 0
	var parts []string
	for _, k := range steps {
		kills += ft.atStep[k]
		parts = append(parts, fmt.Sprintf("%s %d", k, ft.atStep[k]))
	}
	var kinds []string
	for _, k := range []string{"raise", "double", "crash", "crash-then-fix", "min-jump", "crash-below-min"} {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, ft.kinds[k]))
	}
	s := fmt.Sprintf("fault injection: %d iterations, seed %d, %d passed, %d failed, %s; %d SIGKILLs, journal step at the kill: %s; cases: %s",
		n, seed, ft.passed, len(ft.failed), ft.elapsed.Round(100*time.Millisecond), kills, strings.Join(parts, ", "), strings.Join(kinds, ", "))
	if len(ft.failed) > 0 {
		s += "; failed: " + strings.Join(ft.failed, ", ")
	}
	return s
}

func TestFaultInjectionKillDuringUpgrade(t *testing.T) {
	n := 5
	if s := os.Getenv("LAVAVISOR_FAULT_ITERATIONS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("LAVAVISOR_FAULT_ITERATIONS=%q: want a number ≥ 1", s)
		}
		n = v
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LAVAVISOR_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LAVAVISOR_FAULT_SEED=%q: want a number", s)
		}
		seed = v
	}
	t.Logf("seed %d: LAVAVISOR_FAULT_SEED=%d replays these choices", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x1a7a))
	tally := &faultTally{atStep: map[string]int{}, kinds: map[string]int{}}
	start := time.Now()
	for i := range n {
		c := randomFaultCase(rng)
		tally.kinds[c.kind]++
		name := fmt.Sprintf("%02d-%s", i+1, c.kind)
		ok := t.Run(name, func(t *testing.T) {
			t.Logf("case: %s", c)
			runFaultCase(t, c, tally)
		})
		tally.mu.Lock()
		if ok {
			tally.passed++
		} else {
			tally.failed = append(tally.failed, name)
		}
		tally.mu.Unlock()
	}
	tally.elapsed = time.Since(start)
	t.Log(tally.summary(n, seed))
}

// faultRun is one iteration in progress.
type faultRun struct {
	t     *testing.T
	h     *testHome
	c     faultCase
	homes []string // the home's path as given and resolved: a process of ours runs from there

	mu         sync.Mutex
	violations []string
}

func runFaultCase(t *testing.T, c faultCase, tally *faultTally) {
	h := newTestHome(t)
	resolved, err := filepath.EvalSymlinks(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	r := &faultRun{t: t, h: h, c: c, homes: []string{h.dir + "/", resolved + "/"}}
	// The crashing 6.2.6: a script that exits 1 for the services it crashes
	// for, and runs the fake 6.2.6 for the others.
	pattern := "*"
	if c.crashOnly != "" {
		pattern = c.crashOnly + ".yml"
	}
	crasher := []byte(fmt.Sprintf("#!/bin/sh\n[ \"$1\" = version ] && { echo 6.2.6; exit 0; }\n"+
		"case \"$2\" in %s) sleep %.3f; echo 'FTL fault injection: this release crashes at start' >&2; exit 1;; esac\nexec %q \"$@\"\n",
		pattern, c.crashWait.Seconds(), filepath.Join(fakeBuilds, "6.2.6", "lavap")))
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	stop, env := 5*time.Second, []string(nil)
	if c.slowStop > 0 {
		stop, env = c.slowStop, []string{"FAKE_IGNORE=1"}
	}
	cfg := fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: 100ms\nstop-timeout: %s\nlink: none\nrolling: true\nmin-uptime: %s\n", h.dir, stop, c.minUptime)
	if c.served {
		rs := newReleaseServer(t)
		if c.crash {
			rs.set(func(rs *releaseServer) { rs.override["6.2.6"] = crasher })
		}
		url := slowServer(t, rs, c.fetchWait)
		cfg += fmt.Sprintf("auto-download: true\ndownload:\n  url: %s/v{version}/lavap-v{version}-{os}-{arch}\n  checksums: %s/v{version}/sha256sum.txt\n", url, url)
	} else {
		h.place("6.2.6")
		h.place("6.2.7")
		if c.crash {
			if err := os.WriteFile(filepath.Join(h.root(), "upgrades", "v6.2.6", "lavap"), crasher, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg += "services:\n"
	for _, name := range faultServices {
		cfg += h.service(name, "", env...)
	}
	h.config(cfg)

	p := h.start("start")
	p.waitFor("every service up on 6.2.5", func() bool { return r.allOn("6.2.5") })
	stopSampler := r.sample()
	defer stopSampler()

	// The trigger, and the second change from a timer: the kills do not wait for it.
	h.versions(c.first.min, c.first.target)
	changed := make(chan error, 1)
	if c.second != nil {
		time.AfterFunc(c.second.after, func() { changed <- writeVersionsFile(h.dir, c.second.min, c.second.target) })
	} else {
		changed <- nil
	}
	for i, d := range c.kills {
		time.Sleep(d) // the random moment of the kill: the point of the test, not a synchronisation
		step := r.kill(p)
		tally.mu.Lock()
		tally.atStep[step]++
		tally.mu.Unlock()
		if t.Failed() {
			return
		}
		p = h.start("start")
		p.waitLog("lavavisor started")
		if step != "none" && !strings.Contains(p.out.String(), "an upgrade was interrupted") {
			t.Errorf("kill %d: killed at journal step %s, but the new instance did not report an interrupted upgrade", i+1, step)
		}
	}
	if err := <-changed; err != nil {
		t.Fatal(err)
	}
	r.settle(p)
	stopSampler()
	r.mu.Lock()
	for _, v := range r.violations {
		t.Error(v)
	}
	r.mu.Unlock()

	// Stopped: nothing temporary left, nothing running, current still verified.
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	h.noTemp(t)
	if left := r.homeProcs(); len(left) > 0 {
		t.Errorf("processes left after a graceful stop: %v", left)
	}
	r.currentVerified("after the final stop")
}

// kill SIGKILLs p, waits for its children to die (parent-death signal), and
// checks that current is a complete verified release. It returns the journal
// step state.json holds, "none" when no upgrade was in progress.
func (r *faultRun) kill(p *proc) string {
	t := r.t
	p.signal(syscall.SIGKILL)
	p.wait()
	step := "none"
	if st := r.readState(); st.Journal != nil {
		step = st.Journal.Step
		if step == "restart" {
			step = fmt.Sprintf("restart (%d moved)", len(st.Journal.Moved))
		}
	}
	t.Logf("SIGKILL at journal step %s", step)
	if os.Getenv("FAULT_DEBUG") != "" {
		t.Logf("output of the killed instance:\n%s", p.out.String())
	}
	deadline := time.Now().Add(5 * time.Second)
	for left := r.homeProcs(); len(left) > 0; left = r.homeProcs() {
		if time.Now().After(deadline) {
			t.Errorf("processes of the killed instance still alive 5 s after its SIGKILL: %v", left)
			return step
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.currentVerified("after SIGKILL at step " + step)
	return step
}

// settle waits until the upgrade has ended as it must: every service runs
// once, on the final target, or on 6.2.5 with the target marked bad; no
// journal left; every process of the home a child of this instance.
func (r *faultRun) settle(p *proc) {
	t := r.t
	want, bad := r.c.last().target, r.c.wantBad()
	if bad {
		want = "6.2.5"
	}
	// Only a failing case waits this long: a rolling upgrade with kills and a
	// rollback on a busy machine takes seconds.
	const settleLimit = 60 * time.Second
	deadline := time.Now().Add(settleLimit)
	for {
		st := r.readState()
		_, marked := st.Bad[r.c.last().target]
		if st.Journal == nil && r.allOn(want) && (!bad || marked) {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("lavavisor exited (%d) before the upgrade settled", p.code)
		default:
		}
		if time.Now().After(deadline) {
			var on []string
			for _, name := range faultServices {
				on = append(on, fmt.Sprintf("%s %v", name, r.live(name)))
			}
			t.Fatalf("not settled after %s: want every service once on %s (target bad: %v); running %s; current %s; journal %+v; bad %v",
				settleLimit, want, bad, strings.Join(on, ", "), r.h.currentTag(), st.Journal, st.Bad)
		}
		time.Sleep(10 * time.Millisecond)
	}
	lv := p.cmd.Process.Pid
	for _, pr := range r.homeProcs() {
		if pr.ppid != lv {
			t.Errorf("process %d (%s) is not a child of the running instance %d", pr.pid, pr.cmd, lv)
		}
	}
	r.currentVerified("once settled")
	if !bad && r.h.currentTag() != "v"+want {
		t.Errorf("current is %s, want v%s", r.h.currentTag(), want)
	}
}

// sample checks, every few milliseconds until stopped, that no service runs
// twice and that none runs a release below the minimum that was not running
// before (6.2.5, the release of the start).
func (r *faultRun) sample() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	minimum := r.c.first.min
	go func() {
		defer close(finished)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for _, name := range faultServices {
				live := r.live(name)
				var bad []string
				if len(live) > 1 {
					bad = append(bad, fmt.Sprintf("%s runs %d times at once: %v", name, len(live), live))
				}
				for _, lp := range live {
					if lp.version != "6.2.5" && compareVersions(lp.version, minimum) < 0 {
						bad = append(bad, fmt.Sprintf("%s runs %s (pid %d): below the minimum %s and not the release running before", name, lp.version, lp.pid, minimum))
					}
				}
				r.mu.Lock()
				for _, v := range bad {
					if len(r.violations) < 20 && !slices.Contains(r.violations, v) {
						r.violations = append(r.violations, v)
					}
				}
				r.mu.Unlock()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}

type liveProc struct {
	pid     int
	version string
}

func (lp liveProc) String() string { return fmt.Sprintf("%d@%s", lp.pid, lp.version) }

// live lists the running processes of a service, from its record: a pid
// counts while it is alive and still runs a binary from this home (a reused
// pid does not).
func (r *faultRun) live(name string) []liveProc {
	version := map[int]string{}
	var order []int
	for _, l := range r.h.events(name) {
		f := strings.Fields(l)
		if len(f) < 3 || f[0] != "start" {
			continue
		}
		pid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		if _, seen := version[pid]; !seen {
			order = append(order, pid)
		}
		version[pid] = f[2]
	}
	var out []liveProc
	for _, pid := range order {
		if alive(pid) && r.ours(pid) {
			out = append(out, liveProc{pid, version[pid]})
		}
	}
	return out
}

// allOn: every service runs exactly once, on version.
func (r *faultRun) allOn(version string) bool {
	for _, name := range faultServices {
		live := r.live(name)
		if len(live) != 1 || live[0].version != version {
			return false
		}
	}
	return true
}

// ours: pid runs a binary from the home, names the home on its command line
// (lavavisor itself, a shell running a release that is a script), or is a
// service of the home (its FAKE_RECORD: a script that ran exec).
func (r *faultRun) ours(pid int) bool {
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	for _, home := range r.homes {
		if strings.HasPrefix(exe, home) || bytes.Contains(cmdline, []byte(home)) ||
			bytes.Contains(cmdline, []byte(strings.TrimSuffix(home, "/")+"\x00")) || bytes.Contains(environ, []byte("FAKE_RECORD="+home)) {
			return true
		}
	}
	return false
}

type homeProc struct {
	pid, ppid int
	cmd       string
}

func (hp homeProc) String() string { return fmt.Sprintf("%d (parent %d): %s", hp.pid, hp.ppid, hp.cmd) }

// homeProcs lists every live process of this home, lavavisor excepted.
func (r *faultRun) homeProcs() []homeProc {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []homeProc
	for _, f := range stats {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil || pid == os.Getpid() || !r.ours(pid) {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		fields := strings.Fields(string(b[i+1:]))
		if i < 0 || len(fields) < 2 || fields[0] == "Z" {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if exe == lavavisorBin {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		out = append(out, homeProc{pid, ppid, strings.ReplaceAll(strings.TrimSpace(string(cmdline)), "\x00", " ")})
	}
	return out
}

// currentVerified: current points at a release whose manifest's sha256 is
// the binary's.
func (r *faultRun) currentVerified(when string) {
	t := r.t
	t.Helper()
	cur := r.h.currentTag()
	if cur == "" {
		t.Errorf("%s: current does not resolve", when)
		return
	}
	var m struct {
		Version string `json:"version"`
		SHA256  string `json:"sha256"`
	}
	b, err := os.ReadFile(filepath.Join(r.h.root(), "upgrades", cur, "manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil {
		t.Errorf("%s: current %s has no readable manifest: %v", when, cur, err)
		return
	}
	bin, err := os.ReadFile(filepath.Join(r.h.root(), "upgrades", cur, "lavap"))
	if err != nil {
		t.Errorf("%s: current %s has no binary: %v", when, cur, err)
		return
	}
	if sum := fmt.Sprintf("%x", sha256.Sum256(bin)); sum != m.SHA256 || "v"+m.Version != cur {
		t.Errorf("%s: current %s does not verify: binary sha256 %s, manifest %+v", when, cur, sum, m)
	}
}

// faultState is the part of state.json the invariants read.
type faultState struct {
	Journal *struct {
		Step  string   `json:"step"`
		Moved []string `json:"moved"`
	} `json:"journal"`
	Bad map[string]json.RawMessage `json:"bad"`
}

func (r *faultRun) readState() faultState {
	var st faultState
	b, err := os.ReadFile(filepath.Join(r.h.root(), "state.json"))
	if err != nil {
		return st // not written yet
	}
	if err := json.Unmarshal(b, &st); err != nil {
		r.t.Errorf("state.json does not decode (it is replaced atomically): %v\n%s", err, b)
	}
	return st
}

// slowServer serves what rs serves, a release binary only after delay: a
// download that takes long enough to be killed during.
func slowServer(t *testing.T, rs *releaseServer, delay time.Duration) string {
	target, err := url.Parse(rs.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/lavap-") {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s.URL
}

// writeVersionsFile is testHome.versions for a goroutine: it returns its error.
func writeVersionsFile(dir, min, target string) error {
	body := fmt.Sprintf("provider_min: %s\nprovider_target: %s\nconsumer_min: %s\nconsumer_target: %s\n", min, target, min, target)
	tmp := filepath.Join(dir, "versions.yml.tmp2")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return fmt.Errorf("write versions: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "versions.yml")); err != nil {
		return fmt.Errorf("write versions: %w", err)
	}
	return nil
}

// compareVersions compares two X.Y.Z versions.
func compareVersions(a, b string) int {
	var x, y [3]int
	fmt.Sscanf(a, "%d.%d.%d", &x[0], &x[1], &x[2])
	fmt.Sscanf(b, "%d.%d.%d", &y[0], &y[1], &y[2])
	return slices.Compare(x[:], y[:])
}
