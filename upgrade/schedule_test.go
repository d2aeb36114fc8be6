package upgrade

import (
	"fmt"
	"testing"
	"time"
)

func hm(h, m int) time.Duration { return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute }

// at is a UTC time on 2026-03-29, the night Europe moves its clocks: UTC
// does not, and neither does the schedule.
func at(day, h, m, s int) time.Time { return time.Date(2026, 3, day, h, m, s, 0, time.UTC) }

func TestScheduleNext(t *testing.T) {
	window := Schedule{Open: hm(2, 0), Close: hm(4, 0)}
	wrap := Schedule{Open: hm(22, 0), Close: hm(2, 0)}
	spread := Schedule{Open: hm(2, 0), Close: hm(4, 0), Spread: 10 * time.Minute, Delay: 7 * time.Minute}
	only := Schedule{Spread: 10 * time.Minute, Delay: 3 * time.Minute}
	for _, tc := range []struct {
		name      string
		s         Schedule
		now, seen time.Time
		want      Wait
	}{
		{"no schedule", Schedule{}, at(29, 12, 0, 0), at(29, 12, 0, 0), Wait{}},
		{"before the window", window, at(29, 1, 59, 59), at(29, 1, 0, 0), Wait{at(29, 2, 0, 0), WaitWindow}},
		{"opening is inclusive", window, at(29, 2, 0, 0), at(29, 1, 0, 0), Wait{}},
		{"inside", window, at(29, 3, 59, 59), at(29, 3, 0, 0), Wait{}},
		{"closing is exclusive", window, at(29, 4, 0, 0), at(29, 3, 0, 0), Wait{at(30, 2, 0, 0), WaitWindow}},
		{"after the window: tomorrow's", window, at(29, 23, 0, 0), at(29, 23, 0, 0), Wait{at(30, 2, 0, 0), WaitWindow}},
		{"wrap: before midnight", wrap, at(29, 23, 0, 0), at(29, 23, 0, 0), Wait{}},
		{"wrap: after midnight", wrap, at(30, 1, 59, 59), at(30, 1, 0, 0), Wait{}},
		{"wrap: closed", wrap, at(30, 2, 0, 0), at(30, 1, 0, 0), Wait{at(30, 22, 0, 0), WaitWindow}},
		{"wrap: opening", wrap, at(29, 21, 59, 0), at(29, 21, 0, 0), Wait{at(29, 22, 0, 0), WaitWindow}},
		{"spread from the opening", spread, at(29, 2, 0, 0), at(29, 1, 0, 0), Wait{at(29, 2, 7, 0), WaitSpread}},
		{"spread outside: the opening plus the delay", spread, at(29, 1, 0, 0), at(29, 1, 0, 0), Wait{at(29, 2, 7, 0), WaitWindow}},
		{"spread from when it was seen", spread, at(29, 2, 31, 0), at(29, 2, 30, 0), Wait{at(29, 2, 37, 0), WaitSpread}},
		{"spread over", spread, at(29, 2, 37, 0), at(29, 2, 30, 0), Wait{}},
		{"seen too late for this window", spread, at(29, 3, 55, 0), at(29, 3, 55, 0), Wait{at(30, 2, 7, 0), WaitWindow}},
		{"seen long ago, restarted in the window", spread, at(29, 2, 10, 0), at(20, 2, 0, 0), Wait{}},
		{"spread only", only, at(29, 12, 1, 0), at(29, 12, 0, 0), Wait{at(29, 12, 3, 0), WaitSpread}},
		{"spread only, over", only, at(29, 12, 3, 0), at(29, 12, 0, 0), Wait{}},
		{"seen in the future (clock stepped back)", only, at(29, 12, 0, 0), at(29, 13, 0, 0), Wait{at(29, 12, 3, 0), WaitSpread}},
	} {
		if got := tc.s.Next(tc.now, tc.seen); got != tc.want {
			t.Errorf("%s: Next(%s, seen %s) = %v %s, want %v %s", tc.name, tc.now.Format(time.TimeOnly), tc.seen.Format(time.DateTime),
				got.NotBefore.Format(time.DateTime), got.WaitingFor, tc.want.NotBefore.Format(time.DateTime), tc.want.WaitingFor)
		}
	}
}

// Walking a whole day minute by minute: a schedule answers "now" exactly
// inside [opening + delay, closing), whatever the time zone of the clock, and
// a wait always ends at a time it then answers "now" for.
func TestScheduleWholeDay(t *testing.T) {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	for _, s := range []Schedule{
		{Open: hm(2, 0), Close: hm(4, 0), Spread: 30 * time.Minute, Delay: 17 * time.Minute},
		{Open: hm(23, 30), Close: hm(0, 30), Spread: 30 * time.Minute, Delay: 29 * time.Minute},
	} {
		seen := at(28, 0, 0, 0)
		for m := 0; m < 24*60; m++ {
			now := at(29, 0, 0, 0).Add(time.Duration(m) * time.Minute).In(zone)
			off := now.UTC().Sub(now.UTC().Truncate(day))
			in := func(d time.Duration) bool {
				if s.Open < s.Close {
					return d >= s.Open+s.Delay && d < s.Close
				}
				return d >= s.Open+s.Delay || d < s.Close && d+day >= s.Open+s.Delay
			}
			w := s.Next(now, seen)
			if w.Now() != in(off) {
				t.Fatalf("%s at %s: %v", s, now.UTC().Format(time.TimeOnly), w)
			}
			if !w.Now() && !s.Next(w.NotBefore, seen).Now() {
				t.Fatalf("%s at %s: waits until %s, which is not a time to go", s, now.UTC().Format(time.TimeOnly), w.NotBefore)
			}
		}
	}
}

// The delay is fixed per host name and home, within the spread, and spread
// over a fleet.
func TestInstanceDelay(t *testing.T) {
	spread := 10 * time.Minute
	a := InstanceDelay("provider-0", "/home/lava/.lavavisor", spread)
	if a != InstanceDelay("provider-0", "/home/lava/.lavavisor", spread) {
		t.Error("not stable")
	}
	seen := map[time.Duration]bool{}
	for i := range 50 {
		d := InstanceDelay(fmt.Sprintf("provider-%d", i), "/home/lava/.lavavisor", spread)
		if d < 0 || d >= spread || d%time.Second != 0 {
			t.Fatalf("delay %s outside [0, %s) or not whole seconds", d, spread)
		}
		seen[d] = true
	}
	if len(seen) < 45 {
		t.Errorf("50 hosts share %d delays: not spread", len(seen))
	}
	if InstanceDelay("provider-0", "/other/.lavavisor", spread) == a && InstanceDelay("provider-0", "/third/.lavavisor", spread) == a {
		t.Error("the home does not count")
	}
	if d := InstanceDelay("h", "/x", 0); d != 0 {
		t.Errorf("no spread: %s", d)
	}
	if d := InstanceDelay("h", "/x", 500*time.Millisecond); d < 0 || d >= 500*time.Millisecond {
		t.Errorf("sub-second spread: %s", d)
	}
}
