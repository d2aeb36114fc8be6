package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// pod's --stop-timeout (LAVAVISOR_STOP_TIMEOUT) is what the Helm chart keeps
// its grace period above: it must be the timeout lavap is actually stopped
// with, over config.yml's.
func TestPodStopTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"config.yml alone", nil, "", "timeout=7s"},
		{"the flag over config.yml", []string{"--stop-timeout", "42s"}, "", "timeout=42s"},
		{"the variable over config.yml", nil, "43s", "timeout=43s"},
		{"the flag over the variable", []string{"--stop-timeout=44s"}, "1h", "timeout=44s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHome(t)
			h.place("6.2.5")
			h.link("6.2.5")
			h.config("node: file:///nonexistent/versions.yml\nstop-timeout: 7s\n")
			t.Setenv("FAKE_RECORD", h.record("pod"))
			t.Setenv("LAVAVISOR_STOP_TIMEOUT", tc.env) // restored after the test
			if tc.env == "" {
				os.Unsetenv("LAVAVISOR_STOP_TIMEOUT")
			}
			args := append(append([]string{"pod"}, tc.args...), "--", "lavap", "rpcprovider", "provider.yml")
			p := h.start(args...)
			p.waitFor("started", func() bool { return h.count("pod", "start") == 1 })
			p.signal(syscall.SIGTERM)
			if code := p.wait(); code != 0 {
				t.Fatalf("exit %d", code)
			}
			var stopping string
			for _, l := range strings.Split(p.out.String(), "\n") {
				if strings.Contains(l, "stopping service") {
					stopping = l
				}
			}
			if !strings.Contains(stopping, tc.want) {
				t.Errorf("stop logged as %q, want %s", stopping, tc.want)
			}
		})
	}
}

// A bad --stop-timeout stops pod before it starts anything, naming the flag.
func TestPodBadStopTimeout(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--stop-timeout", "15"}, 2, `--stop-timeout: expected duration but got "15"`},
		{[]string{"--stop-timeout=-1s"}, 1, "--stop-timeout: negative duration -1s"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			h := newTestHome(t)
			h.place("6.2.5")
			h.link("6.2.5")
			t.Setenv("FAKE_RECORD", h.record("pod"))
			args := append(append([]string{"--directory", h.dir, "pod"}, tc.args...), "--", "lavap", "rpcprovider", "provider.yml")
			code, out := runLavavisor(t, args...)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want %d with %q; output:\n%s", code, tc.code, tc.want, out)
			}
			if n := h.count("pod", "start"); n != 0 {
				t.Errorf("lavap started %d times", n)
			}
		})
	}
}
