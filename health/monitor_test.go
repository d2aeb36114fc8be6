package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCheck is an ExecFunc the test answers by hand: each check waits for
// the test's reply, whatever its ctx says, so that a test can answer a
// check after Stop.
type fakeCheck struct{ calls chan fakeCall }

type fakeCall struct {
	ctx   context.Context
	reply chan error
}

func newFakeCheck() *fakeCheck { return &fakeCheck{calls: make(chan fakeCall)} }

func (f *fakeCheck) run(ctx context.Context, limit int, name string, args ...string) ([]byte, error) {
	c := fakeCall{ctx, make(chan error)}
	f.calls <- c
	return []byte("fake says no\n"), <-c.reply
}

// next waits for the monitor's next check.
func (f *fakeCheck) next(t testing.TB) fakeCall {
	t.Helper()
	select {
	case c := <-f.calls:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no check within 10s")
	}
	panic("unreachable")
}

// changes records onChange calls.
type changes struct {
	mu  sync.Mutex
	got []Status
}

func (c *changes) on(s Status) {
	c.mu.Lock()
	c.got = append(c.got, s)
	c.mu.Unlock()
}

func (c *changes) states() []State {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s []State
	for _, st := range c.got {
		s = append(s, st.State)
	}
	return s
}

var errNo = errors.New("/fake: exit code 1")

// rig: start period 10s checked every 1s, then every 5s, 3 failures.
type rig struct {
	t     *testing.T
	clk   *fakeClock
	check *fakeCheck
	ch    *changes
	m     *Monitor
}

func newRig(t *testing.T, mod func(*Spec)) *rig {
	spec := Spec{Exec: []string{"/fake"}, StartPeriod: 10 * time.Second, StartInterval: time.Second, Interval: 5 * time.Second, Failures: 3}
	if mod != nil {
		mod(&spec)
	}
	r := &rig{t: t, clk: newFakeClock(), check: newFakeCheck(), ch: &changes{}}
	r.m = NewMonitor(spec, r.check.run, r.clk, r.ch.on)
	t.Cleanup(r.m.Stop)
	return r
}

// answer answers the next check and waits until the monitor recorded it
// and asked for its next timer (timers pending: the next check's, and the
// start period's while it lasts). It returns the delay to the next check.
func (r *rig) answer(err error) time.Duration {
	r.t.Helper()
	r.check.next(r.t).reply <- err
	n := 1
	if !closed(r.m.StartPeriodOver()) {
		n = 2
	}
	ds := r.clk.waitTimers(r.t, n)
	return ds[0]
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (r *rig) want(state State, consecutive int, failures uint64) {
	r.t.Helper()
	st := r.m.Status()
	if st.State != state || st.Consecutive != consecutive || st.Failures != failures {
		r.t.Fatalf("status = %s consecutive %d failures %d, want %s %d %d", st.State, st.Consecutive, st.Failures, state, consecutive, failures)
	}
}

func TestMonitorStartPeriodFailuresDoNotCount(t *testing.T) {
	r := newRig(t, nil)
	start := r.clk.Now()
	// Ten failures in the start period: counted in the total, not towards
	// unhealthy; checks every StartInterval.
	for i := 1; i <= 10; i++ {
		if d := r.answer(errNo); d != time.Second {
			t.Fatalf("check %d: next check in %s, want the start interval 1s", i, d)
		}
		r.want(Starting, 0, uint64(i))
		if closed(r.m.StartPeriodOver()) {
			t.Fatal("start period over early")
		}
		r.clk.Advance(time.Second)
	}
	// The 10s timer fired with the last Advance.
	select {
	case <-r.m.StartPeriodOver():
	case <-time.After(10 * time.Second):
		t.Fatal("start period not over at 10s")
	}
	if got := r.m.Status().LastError; got != "exec /fake: exit code 1: fake says no" {
		t.Errorf("LastError = %q", got)
	}
	// After it: every Interval, and the third consecutive failure counts.
	if d := r.answer(errNo); d != 5*time.Second {
		t.Fatalf("next check in %s after the start period, want the interval 5s", d)
	}
	r.want(Starting, 1, 11)
	r.clk.Advance(5 * time.Second)
	r.answer(errNo)
	r.want(Starting, 2, 12)
	r.clk.Advance(5 * time.Second)
	r.answer(errNo)
	r.want(Unhealthy, 3, 13)
	if got := r.ch.states(); !reflect.DeepEqual(got, []State{Unhealthy}) {
		t.Errorf("onChange states = %v, want [unhealthy]", got)
	}
	if since := r.m.Status().Since; !since.Equal(start.Add(20 * time.Second)) {
		t.Errorf("Since = %s, want start+20s", since.Sub(start))
	}
	if closed(r.m.Healthy()) {
		t.Error("Healthy closed for a process never healthy")
	}
}

func TestMonitorOneSuccessHealthy(t *testing.T) {
	r := newRig(t, nil)
	r.answer(errNo)
	r.clk.Advance(time.Second)
	r.answer(nil)
	r.want(Healthy, 0, 1)
	if !closed(r.m.Healthy()) {
		t.Error("Healthy not closed")
	}
	if closed(r.m.StartPeriodOver()) {
		t.Error("start period over after 1s of 10s")
	}
	if got := r.ch.states(); !reflect.DeepEqual(got, []State{Healthy}) {
		t.Errorf("onChange states = %v, want [healthy]", got)
	}
}

// TestMonitorFlapping: failures fewer than Failures leave a healthy
// process healthy, a success resets the count, Failures in a row make it
// unhealthy, one success heals it; onChange sees each change once.
func TestMonitorFlapping(t *testing.T) {
	r := newRig(t, func(s *Spec) { s.StartPeriod = 0 })
	seq := []struct {
		err         error
		state       State
		consecutive int
	}{
		{nil, Healthy, 0},
		{errNo, Healthy, 1},
		{errNo, Healthy, 2},
		{nil, Healthy, 0},
		{errNo, Healthy, 1},
		{errNo, Healthy, 2},
		{errNo, Unhealthy, 3},
		{errNo, Unhealthy, 4},
		{nil, Healthy, 0},
		{errNo, Healthy, 1},
	}
	var failures uint64
	for i, s := range seq {
		if s.err != nil {
			failures++
		}
		if d := r.answer(s.err); d != 5*time.Second {
			t.Fatalf("step %d: next check in %s, want 5s", i, d)
		}
		r.want(s.state, s.consecutive, failures)
		r.clk.Advance(5 * time.Second)
	}
	if got, want := r.ch.states(), []State{Healthy, Unhealthy, Healthy}; !reflect.DeepEqual(got, want) {
		t.Errorf("onChange states = %v, want %v", got, want)
	}
}

// TestMonitorStopDiscardsInFlight: a check under way when Stop is called
// is cancelled, and its result (even a success) changes nothing.
func TestMonitorStopDiscardsInFlight(t *testing.T) {
	r := newRig(t, nil)
	c := r.check.next(t)
	r.m.Stop()
	select {
	case <-c.ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the check under way was not cancelled by Stop")
	}
	c.reply <- nil
	<-r.m.done
	r.want(Starting, 0, 0)
	if closed(r.m.Healthy()) || len(r.ch.states()) != 0 {
		t.Errorf("a result taken after Stop was used: healthy closed %v, changes %v", closed(r.m.Healthy()), r.ch.states())
	}
}

// TestMonitorStopWhileWaiting: no check after Stop.
func TestMonitorStopWhileWaiting(t *testing.T) {
	r := newRig(t, func(s *Spec) { s.StartPeriod = 0 })
	r.answer(nil)
	r.m.Stop()
	r.m.Stop() // twice is fine
	<-r.m.done
	r.clk.Advance(time.Hour)
	select {
	case <-r.check.calls:
		t.Fatal("a check ran after Stop")
	default:
	}
	r.want(Healthy, 0, 0)
}

// TestMonitorStartPeriodEndsDuringCheck: StartPeriodOver closes on time
// while a check is under way; that check began in the start period, so its
// failure does not count; the next one does.
func TestMonitorStartPeriodEndsDuringCheck(t *testing.T) {
	r := newRig(t, func(s *Spec) { s.StartPeriod = 2 * time.Second; s.Failures = 1 })
	r.answer(errNo)
	r.clk.Advance(time.Second)
	c := r.check.next(t) // begun at 1s
	r.clk.Advance(time.Second)
	select {
	case <-r.m.StartPeriodOver():
	case <-time.After(10 * time.Second):
		t.Fatal("start period not over at 2s while a check runs")
	}
	c.reply <- errNo
	if ds := r.clk.waitTimers(t, 1); ds[0] != 5*time.Second {
		t.Fatalf("next check in %s, want the interval", ds[0])
	}
	r.want(Starting, 0, 2)
	r.clk.Advance(5 * time.Second)
	r.answer(errNo)
	r.want(Unhealthy, 1, 3)
}

func TestMonitorZeroStartPeriod(t *testing.T) {
	r := newRig(t, func(s *Spec) { s.StartPeriod = 0; s.Failures = 1 })
	if !closed(r.m.StartPeriodOver()) {
		t.Fatal("start period of 0 not over at once")
	}
	r.answer(errNo)
	r.want(Unhealthy, 1, 1)
}

// TestMonitorChecksNeverOverlap: with a check slower than the interval,
// the next starts only after it ended, an interval later.
func TestMonitorChecksNeverOverlap(t *testing.T) {
	r := newRig(t, func(s *Spec) { s.StartPeriod = 0 })
	c := r.check.next(t)
	r.clk.Advance(time.Minute)
	select {
	case <-r.check.calls:
		t.Fatal("a second check began while the first ran")
	default:
	}
	c.reply <- nil
	if ds := r.clk.waitTimers(t, 1); ds[0] != 5*time.Second {
		t.Fatalf("next check in %s after a slow one, want 5s", ds[0])
	}
}

// TestMonitorHTTPTurnsHealthy: a real endpoint on 127.0.0.1 that answers
// 503 until released, with the real clock.
func TestMonitorHTTPTurnsHealthy(t *testing.T) {
	var ok, checks atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checks.Add(1)
		if ok.Load() == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ch := &changes{}
	m := NewMonitor(Spec{HTTP: srv.URL + "/health", StartInterval: 20 * time.Millisecond, Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: time.Minute, Failures: 3}, nil, RealClock{}, ch.on)
	defer m.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for checks.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	if st := m.Status(); st.State != Starting || st.LastError != "GET "+srv.URL+"/health: 503" {
		t.Fatalf("status %+v, want starting with the 503", st)
	}
	ok.Store(1)
	select {
	case <-m.Healthy():
	case <-time.After(10 * time.Second):
		t.Fatal("not healthy 10s after the endpoint was")
	}
	if got := ch.states(); !reflect.DeepEqual(got, []State{Healthy}) {
		t.Errorf("onChange states = %v", got)
	}
}

// TestMonitorTCPUnhealthy: a real listener closed under the monitor.
func TestMonitorTCPUnhealthy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	unhealthy := make(chan Status, 1)
	m := NewMonitor(Spec{TCP: ln.Addr().String(), Interval: 10 * time.Millisecond, Timeout: time.Second, Failures: 2}, nil, RealClock{}, func(s Status) {
		if s.State == Unhealthy {
			unhealthy <- s
		}
	})
	defer m.Stop()
	<-m.Healthy()
	ln.Close()
	select {
	case s := <-unhealthy:
		if want := "dial tcp " + ln.Addr().String() + ": connect: connection refused"; s.LastError != want {
			t.Errorf("LastError = %q, want %q", s.LastError, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not unhealthy 10s after the listener closed")
	}
}

// TestMonitorReusesConnection: a Monitor's HTTP checks share one
// connection instead of a handshake each.
func TestMonitorReusesConnection(t *testing.T) {
	var conns, checks atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { checks.Add(1) }))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	m := NewMonitor(Spec{HTTP: srv.URL, Interval: time.Millisecond, Timeout: time.Second}, nil, RealClock{}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for checks.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
	m.Stop()
	if n := checks.Load(); n < 20 {
		t.Fatalf("%d checks in 10s", n)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for %d checks, want 1", n, checks.Load())
	}
}
