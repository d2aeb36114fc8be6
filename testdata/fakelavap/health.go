package main

import (
	"bufio"
	"fmt"
	"net"
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
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				fmt.Fprintf(os.Stderr, "ERR fake lavap health: %v\n", err)
				return
			}
			go answerHealth(c, m, start)
		}
	}()
	return nil
}

// answerHealth answers one HTTP/1.1 request and closes the connection. It is
// written by hand rather than with net/http, which would triple the size of the
// fake, and the tests copy it onto a small tmpfs.
func answerHealth(c net.Conn, m healthMode, start time.Time) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	request, err := r.ReadString('\n')
	if err != nil {
		return
	}
	for { // the headers, up to the blank line
		h, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimRight(h, "\r\n") == "" {
			break
		}
	}
	code, body := 200, "ok\n"
	f := strings.Fields(request)
	switch {
	case len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/1."):
		code, body = 400, "bad request\n"
	case f[0] != "GET":
		code, body = 405, "GET only\n"
	case strings.SplitN(f[1], "?", 2)[0] != "/health":
		code, body = 404, "not found\n"
	default:
		if m.kind == "slow" {
			time.Sleep(slowAnswer)
		}
		if !m.healthy(time.Since(start)) {
			code, body = 503, "unhealthy\n"
		}
	}
	reason := map[int]string{200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[code]
	fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", code, reason, len(body), body)
}
