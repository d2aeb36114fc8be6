package health

import (
	"context"
	"sync"
	"time"
)

// State is what the checks of one process say about it.
type State string

const (
	Starting  State = "starting"  // since the process started, not yet healthy
	Healthy   State = "healthy"   // the last check passed
	Unhealthy State = "unhealthy" // Failures consecutive failures after the start period
)

// minInterval stands in for an interval that config should have refused.
const minInterval = time.Second

// Status is a Monitor's view of its process.
type Status struct {
	State       State
	LastError   string    // of the last failed check, "" if none yet
	Consecutive int       // consecutive failures that count (after the start period)
	Failures    uint64    // total failed checks, start period included (lavavisor_health_check_failures_total)
	Since       time.Time // when State was entered
}

// Clock is the seam for tests; RealClock{} implements it.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time                         { return time.Now() }
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Monitor checks one process (one pid) of a service: every start makes a
// new Monitor, in state Starting. It checks at once, then every
// StartInterval during StartPeriod (failures of checks begun then do not
// count), then every Interval, each interval counted from the end of the
// previous check so that checks never overlap. Failures consecutive
// failures after the start period make it Unhealthy; one success makes it
// Healthy.
type Monitor struct {
	spec     Spec
	clock    Clock
	onChange func(Status)
	p        *prober
	cancel   context.CancelFunc

	healthy   chan struct{}
	startOver chan struct{}
	stop      chan struct{}
	done      chan struct{} // the monitor's goroutine has returned

	mu       sync.Mutex
	st       Status
	stopped  bool
	wasReady bool // healthy has been closed
}

// NewMonitor starts checking at once in its own goroutine. onChange, if
// not nil, is called from that goroutine on every State change, one call at
// a time, in order; it must not block long. A Monitor that only reads
// Status and the channels may pass nil.
func NewMonitor(spec Spec, run ExecFunc, clock Clock, onChange func(Status)) *Monitor {
	// Keep-alive on: one idle connection per monitor saves a TCP (and TLS)
	// handshake every check (BenchmarkMonitors20); the Monitor's pid owns
	// it and Stop closes it.
	return newMonitor(spec, run, clock, onChange, true)
}

func newMonitor(spec Spec, run ExecFunc, clock Clock, onChange func(Status), keepAlive bool) *Monitor {
	if clock == nil {
		clock = RealClock{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{
		spec:      spec,
		clock:     clock,
		onChange:  onChange,
		p:         newProber(spec, run, keepAlive),
		cancel:    cancel,
		healthy:   make(chan struct{}),
		startOver: make(chan struct{}),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		st:        Status{State: Starting, Since: clock.Now()},
	}
	// The start period runs from now, not from when the goroutine runs.
	var startTimer <-chan time.Time
	if spec.StartPeriod > 0 {
		startTimer = clock.After(spec.StartPeriod)
	} else {
		close(m.startOver)
	}
	go m.loop(ctx, startTimer)
	return m
}

// Status is the state now; after Stop it no longer changes.
func (m *Monitor) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// Healthy is closed the first time the process is seen healthy. A success
// taken before the start period ended closes it before StartPeriodOver:
// probation that sees StartPeriodOver should look at Healthy once more
// before judging.
func (m *Monitor) Healthy() <-chan struct{} { return m.healthy }

// StartPeriodOver is closed when the start period ends (at once if it is
// zero), whether or not a check is under way.
func (m *Monitor) StartPeriodOver() <-chan struct{} { return m.startOver }

// Stop ends the checks (the process is stopping, held or gone). It never
// blocks and may be called more than once. A check under way is cancelled
// and its result discarded: results belong to the pid they were taken for.
// After Stop returns, Status no longer changes; an onChange call for a
// change made before Stop may still be running or about to run, so a
// caller that forwards changes should tag them with the Monitor.
func (m *Monitor) Stop() {
	m.mu.Lock()
	if !m.stopped {
		m.stopped = true
		close(m.stop)
	}
	m.mu.Unlock()
	m.cancel()
}

func (m *Monitor) loop(ctx context.Context, startTimer <-chan time.Time) {
	defer close(m.done)
	defer m.p.close()
	inStart := startTimer != nil
	endStart := func() {
		startTimer, inStart = nil, false
		close(m.startOver)
	}
	// One check at a time, so one slot is enough; a check abandoned by
	// Stop sends into it and nobody reads it.
	result := make(chan error, 1)
	for {
		counts := !inStart
		go func() { result <- m.p.probe(ctx) }()
	check:
		for {
			select {
			case <-m.stop:
				return
			case <-startTimer:
				endStart()
			case err := <-result:
				m.record(err, counts)
				break check
			}
		}
		interval := m.spec.Interval
		if inStart && m.spec.StartInterval > 0 {
			interval = m.spec.StartInterval
		}
		if interval <= 0 {
			interval = minInterval // config refuses it; a zero must not spin
		}
		next := m.clock.After(interval)
	wait:
		for {
			select {
			case <-m.stop:
				return
			case <-startTimer:
				endStart()
			case <-next:
				break wait
			}
		}
	}
}

// record applies one check's result, unless Stop came first.
func (m *Monitor) record(err error, counts bool) {
	m.mu.Lock()
	if m.stopped {
		m.mu.Unlock()
		return
	}
	was := m.st.State
	if err == nil {
		m.st.Consecutive = 0
		m.st.State = Healthy
		if !m.wasReady {
			m.wasReady = true
			close(m.healthy)
		}
	} else {
		m.st.Failures++
		m.st.LastError = err.Error()
		if counts {
			m.st.Consecutive++
			if m.st.Consecutive >= max(m.spec.Failures, 1) {
				m.st.State = Unhealthy
			}
		}
	}
	changed := m.st.State != was
	if changed {
		m.st.Since = m.clock.Now()
	}
	st := m.st
	m.mu.Unlock()
	if changed && m.onChange != nil {
		m.onChange(st)
	}
}
