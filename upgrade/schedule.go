package upgrade

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// What a waiting upgrade waits for (status and check: "waiting_for").
const (
	WaitWindow = "window" // the upgrade window to open
	WaitSpread = "spread" // this instance's delay within the spread
)

const day = 24 * time.Hour

// Schedule says when an upgrade that only follows the target may swap (SPEC
// §10): inside the daily window, after this instance's fixed delay. An upgrade
// a minimum requires never asks it.
type Schedule struct {
	// Open and Close are offsets from 00:00 UTC; Close before Open wraps past
	// midnight; Open == Close means any time.
	Open, Close time.Duration
	Spread      time.Duration // 0: none
	// Delay is this instance's share of the spread, in [0, Spread):
	// InstanceDelay.
	Delay time.Duration
}

// IsZero reports whether the schedule never makes an upgrade wait.
func (s Schedule) IsZero() bool { return s.Open == s.Close && s.Delay == 0 }

// InstanceDelay is a fixed delay in [0, spread) for the instance on host
// whose home is home: the same at every start, and spread over the fleet by
// a hash, so that instances move one by one without talking to each other.
// Whole seconds when the spread is a second or more, so that not_before reads
// plainly.
func InstanceDelay(host, home string, spread time.Duration) time.Duration {
	if spread <= 0 {
		return 0
	}
	sum := sha256.Sum256([]byte(host + "\x00" + home))
	n := binary.BigEndian.Uint64(sum[:8])
	if spread >= time.Second {
		return time.Duration(n%uint64(spread/time.Second)) * time.Second
	}
	return time.Duration(n % uint64(spread))
}

// Wait is the outcome of a Schedule: go now (NotBefore zero), or wait until
// NotBefore for WaitingFor.
type Wait struct {
	NotBefore  time.Time
	WaitingFor string // WaitWindow or WaitSpread; "" to go now
}

// Now reports whether the upgrade may go now.
func (w Wait) Now() bool { return w.NotBefore.IsZero() }

// Next says when an upgrade of a target first seen at seen may swap, at now.
// The delay counts from seen or from the opening of the window the swap
// falls in, whichever is later; a delay that would end after the window
// closes moves to the next window. The window opens at Open (inclusive) and
// closes at Close (exclusive).
func (s Schedule) Next(now, seen time.Time) Wait {
	now, seen = now.UTC(), seen.UTC()
	if seen.After(now) {
		seen = now
	}
	if s.Open == s.Close {
		at := seen.Add(s.Delay)
		if !at.After(now) {
			return Wait{}
		}
		return Wait{NotBefore: at, WaitingFor: WaitSpread}
	}
	length := ((s.Close-s.Open)%day + day) % day
	midnight := now.Truncate(day) // UTC: a day is always 24h
	// The opening of the window now is in, if any: yesterday's may still be
	// open past midnight.
	for _, open := range []time.Time{midnight.Add(s.Open - day), midnight.Add(s.Open)} {
		if now.Before(open) || !now.Before(open.Add(length)) {
			continue
		}
		at := maxTime(seen, open).Add(s.Delay)
		switch {
		case !at.After(now):
			return Wait{}
		case at.Before(open.Add(length)):
			return Wait{NotBefore: at, WaitingFor: WaitSpread}
		}
		// Seen too late in this window for the delay to end in it.
		return Wait{NotBefore: open.Add(day).Add(s.Delay), WaitingFor: WaitWindow}
	}
	next := midnight.Add(s.Open)
	if !next.After(now) {
		next = next.Add(day)
	}
	return Wait{NotBefore: next.Add(s.Delay), WaitingFor: WaitWindow}
}

// String describes the schedule for the log, status and check.
func (s Schedule) String() string {
	hm := func(d time.Duration) string {
		return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	out := "upgrade-window any time"
	if s.Open != s.Close {
		out = "upgrade-window " + hm(s.Open) + "-" + hm(s.Close) + " UTC"
	}
	if s.Spread > 0 {
		out += fmt.Sprintf(", upgrade-spread %s (this instance's delay %s)", s.Spread, s.Delay)
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
