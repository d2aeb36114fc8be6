package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeHealth is one fake lavap release run with the health knobs.
type fakeHealth struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	rec  string
	done chan struct{}
	out  strings.Builder
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startFakeHealth runs the fake built as version with FAKE_HEALTH=spec,
// listening on addr, and waits until it recorded its start: by then its
// listener, if any, is open.
func startFakeHealth(t *testing.T, version, spec, addr string) *fakeHealth {
	t.Helper()
	f := &fakeHealth{t: t, addr: addr, rec: filepath.Join(t.TempDir(), "rec"), done: make(chan struct{})}
	f.cmd = exec.Command(filepath.Join(fakeBuilds, version, "lavap"), "rpcprovider", "provider.yml")
	f.cmd.Env = append(os.Environ(), "FAKE_HEALTH_ADDR="+addr, "FAKE_HEALTH="+spec, "FAKE_RECORD="+f.rec)
	f.cmd.Stderr = &f.out
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { f.cmd.Wait(); close(f.done) }()
	t.Cleanup(func() { f.cmd.Process.Kill(); <-f.done })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, _ := os.ReadFile(f.rec); strings.HasPrefix(string(b), "start ") {
			return f
		}
		select {
		case <-f.done:
			t.Fatalf("fake %s exited (%v) before starting:\n%s", version, f.cmd.ProcessState, f.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake %s did not start", version)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the fake with SIGINT, as LavaVisor stops lavap, and waits.
func (f *fakeHealth) stop() {
	f.t.Helper()
	f.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		f.t.Fatal("fake did not stop on SIGINT")
	}
}

// get answers GET /health with the status code, or the error.
func (f *fakeHealth) get(timeout time.Duration) (int, error) {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get("http://" + f.addr + "/health")
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (f *fakeHealth) status() int {
	f.t.Helper()
	code, err := f.get(5 * time.Second)
	if err != nil {
		f.t.Fatalf("GET /health: %v\n%s", err, f.out.String())
	}
	return code
}

// The mode is chosen by the release's own version: the first matching entry.
func TestFakeLavapHealthByVersion(t *testing.T) {
	const spec = "6.2.6=fail, 6.2.*=ok, *=fail"
	for _, tc := range []struct {
		version string
		want    int
	}{
		{"6.2.5", 200},
		{"6.2.6", 503},
		{"6.2.7", 200},
		{"6.2.9", 503}, // built as 6.1.0: only * matches
	} {
		f := startFakeHealth(t, tc.version, spec, freeAddr(t))
		if got := f.status(); got != tc.want {
			t.Errorf("release %s with %q: GET /health %d, want %d", tc.version, spec, got, tc.want)
		}
		f.stop()
	}
	// With an address and no FAKE_HEALTH, or no entry that matches: ok.
	if got := startFakeHealth(t, "6.2.5", "", freeAddr(t)).status(); got != 200 {
		t.Errorf("no FAKE_HEALTH: %d, want 200", got)
	}
	if got := startFakeHealth(t, "6.2.5", "6.2.6=fail", freeAddr(t)).status(); got != 200 {
		t.Errorf("no entry for 6.2.5: %d, want 200", got)
	}
}

func TestFakeLavapHealthModes(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		f := startFakeHealth(t, "6.2.5", "*=none", freeAddr(t))
		if _, err := f.get(time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("none: GET gives %v, want connection refused", err)
		}
	})
	t.Run("slow", func(t *testing.T) {
		f := startFakeHealth(t, "6.2.5", "*=slow", freeAddr(t))
		begin := time.Now()
		_, err := f.get(300 * time.Millisecond)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("slow: GET gives %v, want a timeout", err)
		}
		if d := time.Since(begin); d < 300*time.Millisecond {
			t.Errorf("slow answered in %v", d)
		}
	})
	t.Run("after", func(t *testing.T) {
		begin := time.Now()
		f := startFakeHealth(t, "6.2.5", "*=after=1500ms", freeAddr(t))
		if got := f.status(); got != 503 {
			t.Errorf("after=1500ms, at once: %d, want 503", got)
		}
		deadline := time.Now().Add(10 * time.Second)
		for f.status() != 200 {
			if time.Now().After(deadline) {
				t.Fatal("after=1500ms never turned 200")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if d := time.Since(begin); d < 1500*time.Millisecond {
			t.Errorf("200 after %v, want at least 1.5s after the start", d)
		}
	})
	t.Run("flap", func(t *testing.T) {
		f := startFakeHealth(t, "6.2.5", "*=flap=300ms", freeAddr(t))
		var seen []int // the successive answers, repeats collapsed
		for deadline := time.Now().Add(10 * time.Second); len(seen) < 4 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if code := f.status(); len(seen) == 0 || seen[len(seen)-1] != code {
				seen = append(seen, code)
			}
		}
		if len(seen) < 4 || seen[0] != 200 || seen[1] != 503 || seen[2] != 200 || seen[3] != 503 {
			t.Errorf("flap=300ms answered %v, want 200, 503, 200, 503", seen)
		}
	})
	t.Run("bad spec", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(fakeBuilds, "6.2.5", "lavap"), "rpcprovider")
		cmd.Env = append(os.Environ(), "FAKE_HEALTH_ADDR="+freeAddr(t), "FAKE_HEALTH=*=sometimes")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), `unknown mode "sometimes"`) {
			t.Errorf("bad FAKE_HEALTH: %v\n%s", err, out)
		}
	})
}

// A restarted release binds the port its predecessor served on at once, even
// with the old connections in TIME_WAIT: the fake closes each connection first
// (Connection: close), which without SO_REUSEADDR blocks a new bind for a
// minute.
func TestFakeLavapHealthPortReuse(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	for i := range 3 {
		f := startFakeHealth(t, "6.2.5", "*=ok", addr)
		// Read to the end before closing: the fake then closes first, so
		// its side (the port it binds) is the one left in TIME_WAIT. An
		// HTTP client may close first, leaving TIME_WAIT on its own port
		// (seen under load: the test then exercised nothing).
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		resp, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(resp), "HTTP/1.1 200") {
			t.Fatalf("run %d: %v %q", i, err, resp)
		}
		f.stop()
		// The closing handshake ends on the client's FIN, which a loaded
		// machine may send late: a generous bound, not a timing.
		deadline := time.Now().Add(30 * time.Second)
		for !serverTimeWait(t, port) {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no TIME_WAIT on port %s: the test does not exercise the reuse", i, port)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// serverTimeWait reports whether a socket bound to 127.0.0.1:port is in
// TIME_WAIT (state 06 in /proc/net/tcp, addresses in hex).
func serverTimeWait(t *testing.T, port string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	local := fmt.Sprintf("0100007F:%04X", p)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == local && f[3] == "06" {
			return true
		}
	}
	return false
}
