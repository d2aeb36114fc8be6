package config

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// Window is a daily span of time in UTC (SPEC §10, upgrade-window): it opens
// at Start and closes at End, both offsets from 00:00 UTC; an End before its
// Start wraps past midnight. The zero Window is "" in the file: any time.
type Window struct {
	Start, End time.Duration
}

// IsZero reports whether w is "": any time.
func (w Window) IsZero() bool { return w == Window{} }

// Length is how long the window stays open each day; 24h for "".
func (w Window) Length() time.Duration {
	if w.IsZero() {
		return 24 * time.Hour
	}
	return ((w.End-w.Start)%(24*time.Hour) + 24*time.Hour) % (24 * time.Hour)
}

// String is the window as written in the file: "02:00-04:00", or "".
func (w Window) String() string {
	if w.IsZero() {
		return ""
	}
	hm := func(d time.Duration) string {
		return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return hm(w.Start) + "-" + hm(w.End)
}

var windowSyntax = regexp.MustCompile(`^([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})$`)

// ParseWindow parses "HH:MM-HH:MM" (UTC, 24-hour clock); "" is any time.
func ParseWindow(s string) (Window, error) {
	if s == "" {
		return Window{}, nil
	}
	bad := fmt.Errorf(`invalid upgrade window %q: want "HH:MM-HH:MM" in UTC on a 24-hour clock, such as "02:00-04:00" (may wrap midnight: "22:00-02:00"), or "" for any time`, s)
	m := windowSyntax.FindStringSubmatch(s)
	if m == nil {
		return Window{}, bad
	}
	var n [4]int
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	if n[0] > 23 || n[2] > 23 || n[1] > 59 || n[3] > 59 {
		return Window{}, bad
	}
	w := Window{
		Start: time.Duration(n[0])*time.Hour + time.Duration(n[1])*time.Minute,
		End:   time.Duration(n[2])*time.Hour + time.Duration(n[3])*time.Minute,
	}
	if w.Start == w.End {
		return Window{}, fmt.Errorf(`invalid upgrade window %q: it opens and closes at the same minute; for any time of day use ""`, s)
	}
	return w, nil
}
