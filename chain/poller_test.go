package chain

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// patience is how long a test waits for what must happen: only a failing test
// waits that long, and a busy machine (-race, a cold build cache, other builds)
// must not make a passing one fail.
const patience = 30 * time.Second

// stepSource answers each Query with the next answer a test hands it, so a test
// knows exactly which polls have been processed: the poller asks again only
// after it has dealt with the previous answer.
type stepSource struct {
	steps   chan answer
	entered chan struct{} // one per Query call
	sent    int           // answers handed over (test goroutine only)
	seen    int           // Query calls counted (test goroutine only)
}

type answer struct {
	snap  Snapshot
	err   error
	panic bool
}

func (s *stepSource) Query(ctx context.Context) (Snapshot, error) {
	s.entered <- struct{}{}
	select {
	case a := <-s.steps:
		if a.panic {
			panic("decoder bug")
		}
		return a.snap, a.err
	case <-ctx.Done():
		return Snapshot{}, ctx.Err()
	}
}
func (s *stepSource) ChainID(context.Context) (string, error) { return "lava", nil }
func (s *stepSource) BlockTime(context.Context, string) (time.Duration, error) {
	return 0, errors.New("no spec")
}
func (s *stepSource) String() string { return "step" }
func (s *stepSource) Close() error   { return nil }

func (s *stepSource) step(t *testing.T, a answer) {
	t.Helper()
	select {
	case s.steps <- a:
		s.sent++
	case <-time.After(patience):
		t.Fatal("the poller did not poll")
	}
}

// sync waits until the poller asks for the next answer, so every answer handed
// over so far has been processed.
func (s *stepSource) sync(t *testing.T) {
	t.Helper()
	for s.seen <= s.sent {
		select {
		case <-s.entered:
			s.seen++
		case <-time.After(patience):
			t.Fatal("the poller did not poll again")
		}
	}
}

// snapAt is an answer of chain "lava" at height h with targets target.
func snapAt(t *testing.T, h int64, target string) Snapshot {
	t.Helper()
	v, err := parseVersions(map[string]string{"provider_min": "5.5.1", "provider_target": target,
		"consumer_min": "5.5.1", "consumer_target": target})
	if err != nil {
		t.Fatal(err)
	}
	return Snapshot{Versions: v, Height: h, ChainID: "lava", Source: "step"}
}

type pollerRig struct {
	src     *stepSource
	p       *Poller
	hook    *logtest.Hook
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	records []Snapshot
}

func startPoller(t *testing.T, o PollerOptions, subscribe func(p *Poller)) *pollerRig {
	t.Helper()
	log, hook := testLog()
	r := &pollerRig{src: &stepSource{steps: make(chan answer), entered: make(chan struct{}, 1000)}, hook: hook, done: make(chan error, 1)}
	if o.Interval == 0 {
		o.Interval = time.Millisecond
	}
	o.Log = log
	if o.Record == nil {
		o.Record = func(s Snapshot) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.records = append(r.records, s)
			return nil
		}
	}
	r.p = NewPoller(r.src, o)
	if subscribe != nil {
		subscribe(r.p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.p.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the poller and waits for Run to return nil.
func (r *pollerRig) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Fatalf("Run = %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(patience):
		t.Fatal("Run did not return after cancel")
	}
}

func (r *pollerRig) recorded() []Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Snapshot(nil), r.records...)
}

// messages are the log lines at a level, in order.
func (r *pollerRig) messages(level logrus.Level) []string {
	var out []string
	for _, e := range r.hook.AllEntries() {
		if e.Level == level {
			msg := e.Message
			if err, ok := e.Data[logrus.ErrorKey].(error); ok {
				msg += ": " + err.Error()
			}
			out = append(out, msg)
		}
	}
	return out
}

func receive(t *testing.T, ch <-chan Snapshot) Snapshot {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(patience):
		t.Fatal("nothing published")
		return Snapshot{}
	}
}

func nothing(t *testing.T, ch <-chan Snapshot) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("published %s at %d, want nothing", s.Versions, s.Height)
	default:
	}
}

// The first answer and then each change are published, to every subscriber;
// repeated versions are not; every accepted answer is recorded.
func TestPollerPublishesChanges(t *testing.T) {
	var a, b <-chan Snapshot
	r := startPoller(t, PollerOptions{}, func(p *Poller) { a, b = p.Subscribe(), p.Subscribe() })
	r.src.step(t, answer{snap: snapAt(t, 10, "6.2.5")})
	r.src.step(t, answer{snap: snapAt(t, 11, "6.2.5")})
	r.src.step(t, answer{snap: snapAt(t, 12, "6.2.5")})
	for _, ch := range []<-chan Snapshot{a, b} {
		if s := receive(t, ch); s.Height != 10 || s.Versions.ProviderTarget.String() != "6.2.5" {
			t.Fatalf("first: %+v", s)
		}
		nothing(t, ch)
	}
	r.src.step(t, answer{snap: snapAt(t, 13, "6.2.6")})
	r.src.step(t, answer{snap: snapAt(t, 14, "6.2.6")})
	r.src.sync(t)
	for _, ch := range []<-chan Snapshot{a, b} {
		if s := receive(t, ch); s.Height != 13 || s.Versions.ProviderTarget.String() != "6.2.6" {
			t.Fatalf("change: %+v", s)
		}
		nothing(t, ch)
	}
	if last, ok := r.p.Last(); !ok || last.Height != 14 {
		t.Fatalf("Last = %+v %v", last, ok)
	}
	var heights []int64
	for _, s := range r.recorded() {
		heights = append(heights, s.Height)
	}
	if len(heights) != 5 || heights[0] != 10 || heights[4] != 14 {
		t.Fatalf("recorded heights %v", heights)
	}
	infos := r.messages(logrus.InfoLevel)
	if len(infos) != 2 || infos[0] != "chain versions" || infos[1] != "chain versions changed" {
		t.Fatalf("info lines %q", infos)
	}
	if n := len(r.messages(logrus.DebugLevel)); n < 5 {
		t.Fatalf("%d debug lines, want one per poll", n)
	}
}

// A subscriber that does not read gets only the latest versions, and the
// poller never blocks on it.
func TestPollerLatestWins(t *testing.T) {
	var ch <-chan Snapshot
	r := startPoller(t, PollerOptions{}, func(p *Poller) { ch = p.Subscribe() })
	for i, target := range []string{"6.2.5", "6.2.6", "6.2.7", "6.2.8"} {
		r.src.step(t, answer{snap: snapAt(t, int64(10+i), target)})
	}
	r.src.sync(t)
	if s := receive(t, ch); s.Versions.ProviderTarget.String() != "6.2.8" || s.Height != 13 {
		t.Fatalf("got %+v, want the latest change", s)
	}
	nothing(t, ch)
}

// Invalid answers are logged with a warning each, never published, recorded or
// kept as Last.
func TestPollerRejects(t *testing.T) {
	var ch <-chan Snapshot
	r := startPoller(t, PollerOptions{ChainID: "lava"}, func(p *Poller) { ch = p.Subscribe() })
	r.src.step(t, answer{snap: snapAt(t, 10, "6.2.5")})
	receive(t, ch)

	bad := snapAt(t, 11, "6.2.5")
	bad.Versions.ProviderMin = Version{6, 2, 8}
	syncing := snapAt(t, 12, "6.2.9")
	syncing.CatchingUp = true
	other := snapAt(t, 13, "6.2.9")
	other.ChainID = "evil-1"
	outOfRange := snapAt(t, 14, "6.2.9")
	outOfRange.Versions.ConsumerTarget = Version{1, 99999, 0}
	for _, a := range []answer{
		{err: errors.New(`decode: provider_target: invalid version "../../x": want X.Y.Z`)},
		{snap: bad},
		{snap: syncing},
		{snap: other},
		{snap: outOfRange},
		{panic: true},
	} {
		r.src.step(t, a)
	}
	r.src.step(t, answer{snap: snapAt(t, 15, "6.2.5")})
	r.src.sync(t)
	warnings := r.messages(logrus.WarnLevel)
	for i, want := range []string{
		`chain poll failed: decode: provider_target: invalid version "../../x"`,
		"chain poll failed: step answered invalid versions: provider_min 6.2.8 above provider_target 6.2.5",
		"chain poll failed: step is catching up (height 12): its answer is ignored",
		`chain poll failed: chain id mismatch: node step reports "evil-1", want "lava"; answer ignored`,
		"chain poll failed: step answered invalid versions: consumer_target: 1.99999.0 out of range",
		"chain poll failed: panic while polling step: decoder bug",
	} {
		if i >= len(warnings) || !strings.HasPrefix(warnings[i], want) {
			t.Fatalf("warning %d: got %q, want %q", i, warnings, want)
		}
	}
	nothing(t, ch)
	for _, s := range r.recorded() {
		if s.Height > 10 && s.Height < 15 {
			t.Fatalf("recorded a rejected answer: %+v", s)
		}
	}
	if last, _ := r.p.Last(); last.Height != 15 {
		t.Fatalf("Last = %d", last.Height)
	}
}

// Without a chain-id setting, the first answer's chain id is enforced.
func TestPollerPinsChainID(t *testing.T) {
	r := startPoller(t, PollerOptions{}, nil)
	r.src.step(t, answer{snap: snapAt(t, 10, "6.2.5")})
	other := snapAt(t, 11, "9.9.9")
	other.ChainID = "other"
	r.src.step(t, answer{snap: other})
	r.src.sync(t)
	if w := r.messages(logrus.WarnLevel); len(w) != 1 || !strings.Contains(w[0], `reports "other", want "lava"`) {
		t.Fatalf("warnings %q", w)
	}
}

// Answers below the last accepted height (a load balancer flapping between nodes)
// are ignored at debug level; a height that stays back is believed in the end.
func TestPollerHeights(t *testing.T) {
	var ch <-chan Snapshot
	initial := snapAt(t, 100, "6.2.5")
	r := startPoller(t, PollerOptions{Initial: &initial}, func(p *Poller) { ch = p.Subscribe() })
	if last, ok := r.p.Last(); !ok || last.Height != 100 {
		t.Fatalf("Last before any poll = %+v", last)
	}
	r.src.step(t, answer{snap: snapAt(t, 90, "6.2.4")}) // below the state.json height
	r.src.step(t, answer{snap: snapAt(t, 101, "6.2.6")})
	r.src.step(t, answer{snap: snapAt(t, 99, "6.2.5")}) // flap back
	r.src.step(t, answer{snap: snapAt(t, 102, "6.2.6")})
	r.src.step(t, answer{snap: snapAt(t, 102, "6.2.6")}) // the same height is fine
	r.src.sync(t)
	if s := receive(t, ch); s.Height != 101 {
		t.Fatalf("published %+v", s)
	}
	nothing(t, ch)
	if n := len(r.recorded()); n != 3 {
		t.Fatalf("%d records, want the 3 accepted answers", n)
	}
	if w := r.messages(logrus.WarnLevel); len(w) != 0 {
		t.Fatalf("warnings for a flapping height: %q", w)
	}
	if d := strings.Join(r.messages(logrus.DebugLevel), "\n"); strings.Count(d, "chain answer below the last height ignored") != 2 {
		t.Fatalf("debug lines:\n%s", d)
	}
	// The chain was reset: it stays below for heightResetAfter answers.
	for i := 0; i < heightResetAfter; i++ {
		r.src.step(t, answer{snap: snapAt(t, int64(5+i), "7.0.0")})
	}
	r.src.sync(t)
	if s := receive(t, ch); s.Height != 5+heightResetAfter-1 || s.Versions.ProviderTarget.String() != "7.0.0" {
		t.Fatalf("after a reset: %+v", s)
	}
	r.src.step(t, answer{snap: snapAt(t, 50, "7.0.0")})
	r.src.sync(t)
	if w := r.messages(logrus.WarnLevel); len(w) != 1 || w[0] != "chain height went back and stays back; accepting it" {
		t.Fatalf("warnings %q", w)
	}
}

// A failed Record is a warning; the change is still published.
func TestPollerRecordError(t *testing.T) {
	var ch <-chan Snapshot
	r := startPoller(t, PollerOptions{Record: func(Snapshot) error { return errors.New("disk full") }},
		func(p *Poller) { ch = p.Subscribe() })
	r.src.step(t, answer{snap: snapAt(t, 10, "6.2.5")})
	receive(t, ch)
	r.src.step(t, answer{snap: snapAt(t, 11, "6.2.5")})
	r.src.sync(t)
	if w := r.messages(logrus.WarnLevel); len(w) != 2 || w[1] != "recording the chain versions failed: disk full" {
		t.Fatalf("warnings %q", w)
	}
}

// Failed polls retry after a delay doubling from the interval up to the cap,
// back to the interval after a success.
func TestPollerBackoff(t *testing.T) {
	r := startPoller(t, PollerOptions{Interval: time.Millisecond, MaxBackoff: 8 * time.Millisecond}, nil)
	fail := answer{err: errors.New("node down")}
	for i := 0; i < 6; i++ {
		r.src.step(t, fail)
	}
	r.src.step(t, answer{snap: snapAt(t, 10, "6.2.5")})
	r.src.step(t, fail)
	r.src.step(t, answer{snap: snapAt(t, 11, "6.2.5")})
	r.src.sync(t)
	var delays []string
	for _, e := range r.hook.AllEntries() {
		if e.Level == logrus.WarnLevel {
			delays = append(delays, e.Data["retry_in"].(time.Duration).String())
		}
	}
	if got := strings.Join(delays, " "); got != "1ms 2ms 4ms 8ms 8ms 8ms 1ms" {
		t.Fatalf("retry delays %s", got)
	}
	if backoff(15*time.Second, 5*time.Minute, 100) != 5*time.Minute || backoff(time.Second, time.Minute, 1) != time.Second {
		t.Fatal("backoff bounds")
	}
}

// Run returns nil at once when cancelled, in the middle of a request as well as
// between polls.
func TestPollerStopsOnCancel(t *testing.T) {
	r := startPoller(t, PollerOptions{Interval: time.Hour}, nil)
	r.src.step(t, answer{snap: snapAt(t, 10, "6.2.5")}) // now waiting an hour
	r.stop(t)

	r = startPoller(t, PollerOptions{}, nil) // its Query waits for a step that never comes
	r.stop(t)
}
