package health

import (
	"sort"
	"sync"
	"testing"
	"time"
)

// fakeClock moves only when a test advances it. Tests synchronise with a
// Monitor by waiting until it has asked for its next timer (waitTimers),
// which it does only after recording the previous check.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []fakeTimer
	changed chan struct{} // closed and replaced whenever timers is added to
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC), changed: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{c.now.Add(d), ch})
	close(c.changed)
	c.changed = make(chan struct{})
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.c <- c.now
	}
	c.timers = kept
}

// waitTimers waits until n timers are pending and returns their offsets
// from now, soonest first.
func (c *fakeClock) waitTimers(t testing.TB, n int) []time.Duration {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		if len(c.timers) >= n {
			var ds []time.Duration
			for _, tm := range c.timers {
				ds = append(ds, tm.at.Sub(c.now))
			}
			c.mu.Unlock()
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			return ds
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %d timers pending after 10s", n)
		}
	}
}
