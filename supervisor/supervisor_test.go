package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

var fakeLavap string // built once in TestMain from ../testdata/fakelavap

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "supervisor-test")
	if err != nil {
		panic(err)
	}
	fakeLavap = filepath.Join(dir, "lavap")
	out, err := exec.Command("go", "build", "-o", fakeLavap, "-ldflags", "-X main.version=6.2.5", "../testdata/fakelavap").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build fake lavap: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer is the log output of a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t      *testing.T
	sup    *Supervisor
	reaper *Reaper
	logs   *syncBuffer
	dir    string
	cancel context.CancelFunc
	done   chan []Result
}

var testBackoff = Backoff{Min: 50 * time.Millisecond, Max: 400 * time.Millisecond, Reset: time.Minute}

func newHarness(t *testing.T, b Backoff) *harness {
	t.Helper()
	logs := &syncBuffer{}
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(NewTextFormatter(false))
	sink := NewSink(logs, log)
	rctx, stopReaper := context.WithCancel(context.Background())
	reaper, err := NewReaper(log.WithField("component", "reaper"))
	if err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { reaper.Run(rctx); close(reaped) }()
	h := &harness{t: t, reaper: reaper, logs: logs, dir: t.TempDir()}
	h.sup = New(Options{Log: log.WithField("component", "supervisor"), Reaper: reaper, Sink: sink, Backoff: b, Grace: 200 * time.Millisecond})
	t.Cleanup(func() {
		if h.cancel != nil {
			h.cancel()
			select {
			case <-h.done:
			case <-time.After(10 * time.Second):
				t.Error("supervisor did not stop")
			}
		}
		stopReaper()
		<-reaped
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	return h
}

func (h *harness) run(specs ...Spec) {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan []Result, 1)
	go func() { h.done <- h.sup.Run(ctx, specs) }()
}

// stop cancels Run and returns its results.
func (h *harness) stop() []Result {
	h.cancel()
	select {
	case rs := <-h.done:
		h.cancel = nil
		return rs
	case <-time.After(10 * time.Second):
		h.t.Fatal("supervisor did not stop")
	}
	return nil
}

func (h *harness) wait() []Result {
	select {
	case rs := <-h.done:
		h.cancel = nil
		return rs
	case <-time.After(10 * time.Second):
		h.t.Fatal("supervisor did not end")
	}
	return nil
}

// spec is a fake lavap service recording to its own file.
func (h *harness) spec(name string, env ...string) Spec {
	rec := filepath.Join(h.dir, name+".rec")
	return Spec{
		Name:        name,
		Command:     fakeLavap,
		Binary:      func() (string, string, error) { return fakeLavap, "v6.2.5", nil },
		Args:        []string{"rpcprovider", name + ".yml"},
		Env:         append([]string{"FAKE_RECORD=" + rec}, env...),
		StopSignal:  syscall.SIGINT,
		StopTimeout: 5 * time.Second,
		MinUptime:   time.Second,
		Restart:     RestartAlways,
	}
}

// service is the running Service of name.
func (h *harness) service(name string) *Service {
	h.sup.mu.Lock()
	defer h.sup.mu.Unlock()
	return h.sup.svcs[name].svc
}

// events returns the recorded lines of a service ("start <pid> ...").
func (h *harness) events(name string) []string {
	b, _ := os.ReadFile(filepath.Join(h.dir, name+".rec"))
	return strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
}

func (h *harness) count(name, event string) int {
	n := 0
	for _, l := range h.events(name) {
		if strings.HasPrefix(l, event+" ") {
			n++
		}
	}
	return n
}

// eventually polls cond with a deadline (no sleeps to synchronise).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pid waits for the service's running process: a fake child records its
// start before the supervisor has stored the process.
func (h *harness) pid(name string) int {
	h.t.Helper()
	pid := 0
	eventually(h.t, name+"'s pid", func() bool {
		for _, st := range h.sup.Status() {
			if st.Name == name {
				pid = st.PID
			}
		}
		return pid != 0
	})
	return pid
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func TestGracefulStopSendsStopSignalAndWaits(t *testing.T) {
	h := newHarness(t, testBackoff)
	a, b := h.spec("a"), h.spec("b")
	b.StopSignal = syscall.SIGTERM
	h.run(a, b)
	eventually(t, "both started", func() bool { return h.count("a", "start") == 1 && h.count("b", "start") == 1 })
	pa, pb := h.pid("a"), h.pid("b")
	rs := h.stop()
	if len(rs) != 2 || !rs[0].Stopped || !rs[1].Stopped {
		t.Fatalf("results = %+v, want both stopped", rs)
	}
	if got := h.events("a"); !strings.HasSuffix(got[len(got)-1], "exit "+fmt.Sprint(pa)+" 6.2.5 0") && h.count("a", "signal") != 1 {
		t.Errorf("a events = %q", got)
	}
	if !contains(h.events("a"), fmt.Sprintf("signal %d 6.2.5 INT", pa)) {
		t.Errorf("a did not get SIGINT: %q", h.events("a"))
	}
	if !contains(h.events("b"), fmt.Sprintf("signal %d 6.2.5 TERM", pb)) {
		t.Errorf("b did not get SIGTERM: %q", h.events("b"))
	}
	if alive(pa) || alive(pb) {
		t.Error("a child is still alive after stop")
	}
	if !strings.Contains(h.logs.String(), "exit code 143") {
		t.Errorf("b's exit (143 after our SIGTERM) is not logged:\n%s", h.logs.String())
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func TestStopTimeoutThenSIGKILL(t *testing.T) {
	h := newHarness(t, testBackoff)
	sp := h.spec("stubborn", "FAKE_IGNORE=1")
	// The child records the polite signal it ignores; it must get to run
	// before the SIGKILL, on a busy machine too.
	sp.StopTimeout = time.Second
	h.run(sp)
	eventually(t, "start", func() bool { return h.count("stubborn", "start") == 1 })
	pid := h.pid("stubborn")
	start := time.Now()
	h.stop()
	if d := time.Since(start); d < sp.StopTimeout {
		t.Errorf("stopped after %v, before the stop timeout", d)
	}
	if h.count("stubborn", "signal") != 1 || alive(pid) {
		t.Errorf("events %q, alive %v", h.events("stubborn"), alive(pid))
	}
	if !strings.Contains(h.logs.String(), "killed by SIGKILL") {
		t.Errorf("no SIGKILL logged:\n%s", h.logs.String())
	}
}

func TestKillStopsAtOnce(t *testing.T) {
	h := newHarness(t, testBackoff)
	sp := h.spec("stubborn", "FAKE_IGNORE=1")
	sp.StopTimeout = time.Hour
	h.run(sp)
	eventually(t, "start", func() bool { return h.count("stubborn", "start") == 1 })
	h.cancel()
	eventually(t, "stop signal delivered", func() bool { return h.count("stubborn", "signal") == 1 })
	h.sup.Kill()
	h.wait()
}

func TestCrashLoopBacksOff(t *testing.T) {
	h := newHarness(t, testBackoff)
	h.run(h.spec("crash", "FAKE_EXIT=1"))
	start := time.Now()
	// Delays 50, 100, 200, 400, 400 ms: the 6th start cannot come before 1.15 s.
	eventually(t, "6 starts", func() bool { return h.count("crash", "start") >= 6 })
	if d := time.Since(start); d < 1150*time.Millisecond {
		t.Errorf("6 starts in %v: no backoff", d)
	}
	st := h.sup.Status()[0]
	if st.Restarts < 5 || st.LastExit != "exit code 1" {
		t.Errorf("status = %+v", st)
	}
}

func TestRestartPolicies(t *testing.T) {
	h := newHarness(t, testBackoff)
	ok := h.spec("ok", "FAKE_EXIT=0")
	ok.Restart = RestartOnFailure
	never := h.spec("never", "FAKE_EXIT=3")
	never.Restart = RestartNever
	h.run(ok, never)
	rs := h.wait()
	if len(rs) != 2 || rs[0].Exit.Code() != 0 || rs[1].Exit.Code() != 3 {
		t.Fatalf("results %+v", rs)
	}
	if ExitCode(rs) != 1 || h.count("ok", "start") != 1 || h.count("never", "start") != 1 {
		t.Errorf("exit code %d, starts %d %d", ExitCode(rs), h.count("ok", "start"), h.count("never", "start"))
	}
	if ExitCode(rs[:1]) != 0 {
		t.Error("all exit 0 should give 0")
	}
}

func TestMissingExecutableKeepsOthersRunning(t *testing.T) {
	h := newHarness(t, testBackoff)
	bad := h.spec("bad")
	bad.Binary = func() (string, string, error) { return "/nonexistent/lavap", "v9.9.9", nil }
	h.run(bad, h.spec("good"))
	eventually(t, "good started", func() bool { return h.count("good", "start") == 1 })
	eventually(t, "error logged twice", func() bool {
		return strings.Count(h.logs.String(), "/nonexistent/lavap: no such file or directory") >= 2
	})
	if h.pid("good") == 0 || h.count("good", "start") != 1 {
		t.Error("good service disturbed")
	}
}

func TestApplyChangesOnlyWhatChanged(t *testing.T) {
	h := newHarness(t, testBackoff)
	same, changed, removed := h.spec("same"), h.spec("changed"), h.spec("removed")
	h.run(same, changed, removed)
	eventually(t, "started", func() bool {
		return h.count("same", "start") == 1 && h.count("changed", "start") == 1 && h.count("removed", "start") == 1
	})
	pSame, pChanged, pRemoved := h.pid("same"), h.pid("changed"), h.pid("removed")
	same2 := same
	same2.StopTimeout = 7 * time.Second // no restart for this
	changed2 := changed
	changed2.Args = append(append([]string{}, changed.Args...), "--extra")
	added := h.spec("added")
	if err := h.sup.Apply(context.Background(), []Spec{same2, changed2, added}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "changed restarted and added started", func() bool {
		return h.count("changed", "start") == 2 && h.count("added", "start") == 1 && h.count("removed", "exit") == 1
	})
	if h.pid("same") != pSame || h.count("same", "start") != 1 {
		t.Error("unchanged service restarted")
	}
	if h.pid("changed") == pChanged || alive(pChanged) || alive(pRemoved) {
		t.Error("old processes still alive")
	}
	// The old process ended before the new one started.
	ev := h.events("changed")
	if !strings.HasPrefix(ev[len(ev)-1], "start ") || !strings.HasPrefix(ev[len(ev)-2], "exit ") {
		t.Errorf("changed events %q", ev)
	}
	if s := h.service("same"); s.snapshot().StopTimeout != 7*time.Second {
		t.Error("new stop-timeout not applied")
	}
	names := []string{}
	for _, st := range h.sup.Status() {
		names = append(names, st.Name)
	}
	if strings.Join(names, ",") != "same,changed,added" {
		t.Errorf("status order %v", names)
	}
}

func TestForwardSignal(t *testing.T) {
	h := newHarness(t, testBackoff)
	h.run(h.spec("a"))
	eventually(t, "start", func() bool { return h.count("a", "start") == 1 })
	h.sup.Forward(syscall.SIGUSR1)
	eventually(t, "USR1", func() bool { return h.count("a", "signal") == 1 })
	if !strings.Contains(h.events("a")[1], "USR1") {
		t.Errorf("events %q", h.events("a"))
	}
}

func TestRestartWithProbation(t *testing.T) {
	h := newHarness(t, testBackoff)
	sp := h.spec("a")
	sp.MinUptime = 5 * time.Second
	var broken bool
	var mu sync.Mutex
	sp.Binary = func() (string, string, error) {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return "/bin/false", "v6.2.6", nil
		}
		return fakeLavap, "v6.2.5", nil
	}
	h.run(sp)
	eventually(t, "start", func() bool { return h.count("a", "start") == 1 })
	mu.Lock()
	broken = true
	mu.Unlock()
	st, err := h.sup.Restart(context.Background(), "a", true)
	if err != nil || st.Release != "v6.2.6" {
		t.Fatalf("restart: %+v %v", st, err)
	}
	select {
	case e := <-st.Early:
		if e.Code() != 1 {
			t.Errorf("early exit %v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no early exit")
	}
	select {
	case <-st.Gone:
		t.Error("an early exit on probation also closed Gone: a probation could take it for a replacement")
	default:
	}
	if h.count("a", "signal") != 1 {
		t.Error("old process did not get its stop signal")
	}
	// Held: no restart of the broken release by policy; the rollback restarts.
	mu.Lock()
	broken = false
	mu.Unlock()
	st, err = h.sup.Restart(context.Background(), "a", false)
	if err != nil || st.Release != "v6.2.5" {
		t.Fatalf("rollback restart: %+v %v", st, err)
	}
	eventually(t, "second start", func() bool { return h.count("a", "start") == 2 })
}

// A probation's watcher learns that its process was stopped for someone
// else's reason (an operator's restart or hold, a reload replacing the
// service): without that it would wait for an exit that never comes.
func TestProbationGoneByOtherRequests(t *testing.T) {
	h := newHarness(t, testBackoff)
	a, b := h.spec("a"), h.spec("b")
	a.MinUptime, b.MinUptime = time.Minute, time.Minute
	h.run(a, b)
	eventually(t, "started", func() bool { return h.count("a", "start") == 1 && h.count("b", "start") == 1 })
	ctx := context.Background()
	closed := func(st Started) bool {
		select {
		case <-st.Gone:
			return true
		default:
			return false
		}
	}

	st, err := h.sup.Restart(ctx, "a", true)
	if err != nil {
		t.Fatal(err)
	}
	if closed(st) {
		t.Fatal("Gone closed for a process nobody replaced")
	}
	next, err := h.sup.Restart(ctx, "a", false) // `lavavisor service restart a`
	if err != nil {
		t.Fatal(err)
	}
	if !closed(st) {
		t.Error("a restart of the process on probation did not close its Gone")
	}
	if closed(next) {
		t.Error("the new process's Gone closed")
	}
	if err := h.sup.Hold(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !closed(next) {
		t.Error("holding the process did not close its Gone")
	}

	st, err = h.sup.Restart(ctx, "b", true)
	if err != nil {
		t.Fatal(err)
	}
	b2 := b
	b2.Args = append(append([]string{}, b.Args...), "--extra")
	if err := h.sup.Apply(ctx, []Spec{a, b2}); err != nil {
		t.Fatal(err)
	}
	select { // closed by the old process's run loop as it stops
	case <-st.Gone:
	case <-time.After(30 * time.Second):
		t.Error("a reload replacing the service did not close Gone")
	}
}

func TestStdinFeedsSecret(t *testing.T) {
	h := newHarness(t, testBackoff)
	sp := h.spec("a", "FAKE_STDIN=1")
	sp.Stdin = []byte("hunter2")
	h.run(sp)
	eventually(t, "stdin read", func() bool { return h.count("a", "stdin") == 1 })
	// sha256("hunter2")[:8]
	if !strings.HasSuffix(h.events("a")[1], " f52fbd32b2b3b86f") {
		t.Errorf("events %q", h.events("a"))
	}
	if strings.Contains(h.logs.String(), "hunter2") {
		t.Error("secret in logs")
	}
}

func TestReaperReapsOrphans(t *testing.T) {
	h := newHarness(t, testBackoff)
	var mu sync.Mutex
	orphans := 0
	h.reaper.OnOrphan(func(int, Exit) { mu.Lock(); orphans++; mu.Unlock() })
	sp := h.spec("parent", "FAKE_ORPHANS=20")
	sp.Restart = RestartNever
	h.run(sp)
	rs := h.wait()
	if rs[0].Exit == nil || rs[0].Exit.Code() != 0 {
		t.Fatalf("parent result %+v", rs[0])
	}
	eventually(t, "20 orphans reaped", func() bool { mu.Lock(); defer mu.Unlock(); return orphans == 20 })
}

// Services stop in parallel: each gets its stop signal while the others are
// still running, not after they have ended.
func TestServicesStopInParallel(t *testing.T) {
	h := newHarness(t, testBackoff)
	var specs []Spec
	for _, n := range []string{"a", "b", "c"} {
		sp := h.spec(n, "FAKE_IGNORE=1")
		sp.StopTimeout = time.Hour
		specs = append(specs, sp)
	}
	h.run(specs...)
	pids := map[string]int{}
	for _, n := range []string{"a", "b", "c"} {
		eventually(t, n+" started", func() bool { return h.count(n, "start") == 1 })
		pids[n] = h.pid(n)
	}
	h.cancel()
	// Every one ignores its signal and the timeout is an hour: only parallel
	// stops get all three signals delivered.
	eventually(t, "all three signalled", func() bool {
		return h.count("a", "signal") == 1 && h.count("b", "signal") == 1 && h.count("c", "signal") == 1
	})
	for n, pid := range pids {
		if !alive(pid) {
			t.Errorf("%s died before the others were signalled", n)
		}
	}
	h.sup.Kill()
	h.wait()
}
