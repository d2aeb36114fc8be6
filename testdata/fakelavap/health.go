package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"time"
)

// healthMode is how the fake answers GET /health.
type healthMode struct {
	kind string        // ok, fail, slow, after, flap or none
	dur  time.Duration // of after and flap
}

func (m healthMode) String() string {
	if m.dur > 0 {
		return m.kind + "=" + m.dur.String()
	}
	return m.kind
}

// slowAnswer is how long a slow fake takes to answer: longer than any health
// timeout a test sets.
const slowAnswer = 10 * time.Second

// pickHealth returns the mode that spec (FAKE_HEALTH) gives version: the first
// entry whose pattern (path.Match: 6.2.6, 6.2.*, *) matches it, else ok.
func pickHealth(spec, version string) (healthMode, error) {
	for _, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		pattern, mode, ok := strings.Cut(entry, "=")
		if !ok {
			return healthMode{}, fmt.Errorf("FAKE_HEALTH entry %q: want VERSION=MODE", entry)
		}
		m, err := parseHealthMode(mode)
		if err != nil {
			return healthMode{}, fmt.Errorf("FAKE_HEALTH entry %q: %w", entry, err)
		}
		match, err := path.Match(strings.TrimSpace(pattern), version)
		if err != nil {
			return healthMode{}, fmt.Errorf("FAKE_HEALTH entry %q: %w", entry, err)
		}
		if match {
			return m, nil
		}
	}
	return healthMode{kind: "ok"}, nil
}

func parseHealthMode(s string) (healthMode, error) {
	kind, arg, hasArg := strings.Cut(strings.TrimSpace(s), "=")
	switch kind {
	case "ok", "fail", "slow", "none":
		if hasArg {
			return healthMode{}, fmt.Errorf("mode %s takes no =DUR", kind)
		}
		return healthMode{kind: kind}, nil
	case "after", "flap":
		d, err := time.ParseDuration(arg)
		if err != nil || d <= 0 {
			return healthMode{}, fmt.Errorf("mode %s wants a positive duration, such as %s=2s", kind, kind)
		}
		return healthMode{kind: kind, dur: d}, nil
	}
	return healthMode{}, fmt.Errorf("unknown mode %q (want ok, fail, slow, after=DUR, flap=DUR or none)", s)
}

// healthy reports whether m answers 200 at elapsed time since the start.
func (m healthMode) healthy(elapsed time.Duration) bool {
	switch m.kind {
	case "ok", "slow":
		return true
	case "after":
		return elapsed >= m.dur
	case "flap":
		return (elapsed/m.dur)%2 == 0 // healthy first, as a release that starts well
	}
	return false
}

// serveHealth listens on addr and answers GET /health as m says, timing from
// start. Go's listeners set SO_REUSEADDR, so a fake restarted at once binds the
// port its predecessor left in TIME_WAIT; a port still held by a live process is
// retried for a few seconds, as an old fake may still be exiting.
func serveHealth(addr string, m healthMode, start time.Time) error {
	if m.kind == "none" {
		return nil
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("health listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if m.kind == "slow" {
			select {
			case <-time.After(slowAnswer):
			case <-r.Context().Done():
				return
			}
		}
		if m.healthy(time.Since(start)) {
			fmt.Fprintln(w, "ok")
			return
		}
		http.Error(w, "unhealthy", http.StatusServiceUnavailable)
	})
	go func() {
		if err := http.Serve(ln, mux); err != nil && !errors.Is(err, net.ErrClosed) {
			fmt.Fprintf(os.Stderr, "ERR fake lavap health: %v\n", err)
		}
	}()
	return nil
}
