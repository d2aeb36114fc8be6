package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{HTTP: "http://127.0.0.1:7776/x"}, "GET http://127.0.0.1:7776/x"},
		{Spec{TCP: "127.0.0.1:2220"}, "tcp 127.0.0.1:2220"},
		{Spec{Exec: []string{"/usr/bin/x", "a", "b"}}, "exec /usr/bin/x a b"},
		{Spec{Exec: []string{"/bin/sh", "-c", "exit 1"}}, `exec /bin/sh -c "exit 1"`},
		{Spec{}, "none"},
	} {
		if got := c.spec.Describe(); got != c.want {
			t.Errorf("Describe() = %q, want %q", got, c.want)
		}
	}
	if !(Spec{Interval: time.Second}).IsZero() || (Spec{TCP: "x:1"}).IsZero() {
		t.Error("IsZero wrong")
	}
}

func TestProbeHTTPStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "/200")
		}
		w.WriteHeader(code)
		fmt.Fprintln(w, "body")
	}))
	defer srv.Close()
	for _, c := range []struct {
		code int
		want string // "" = healthy
	}{
		{200, ""},
		{204, ""},
		{299, ""},
		{301, "GET " + srv.URL + "/301: 301 (redirect to /200 not followed)"},
		{302, "GET " + srv.URL + "/302: 302 (redirect to /200 not followed)"},
		{404, "GET " + srv.URL + "/404: 404"},
		{503, "GET " + srv.URL + "/503: 503"},
	} {
		spec := Spec{HTTP: fmt.Sprintf("%s/%d", srv.URL, c.code), Timeout: 5 * time.Second}
		err := Probe(context.Background(), spec, nil)
		if c.want == "" && err != nil {
			t.Errorf("%d: %v, want healthy", c.code, err)
		}
		if c.want != "" && (err == nil || err.Error() != c.want) {
			t.Errorf("%d: %v, want %q", c.code, err, c.want)
		}
	}
}

func TestProbeHTTPTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	err := Probe(context.Background(), Spec{HTTP: srv.URL, Timeout: 100 * time.Millisecond}, nil)
	if err == nil || err.Error() != "timeout after 100ms" {
		t.Fatalf("err = %v, want timeout after 100ms", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("errors.Is(%v, DeadlineExceeded) = false", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

// TestProbeHTTPBodyLimit: the server sends exactly 64 KiB of a body it
// announces as 10 MiB, then stalls. A check that read one byte more than
// the limit (or drained the rest) would wait for the stall and time out.
func TestProbeHTTPBodyLimit(t *testing.T) {
	for _, code := range []int{200, 503} {
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(10<<20))
			w.WriteHeader(code)
			w.Write(make([]byte, bodyLimit))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		err := Probe(context.Background(), Spec{HTTP: srv.URL, Timeout: 5 * time.Second}, nil)
		close(release)
		srv.Close()
		switch {
		case code == 200 && err != nil:
			t.Errorf("200 with a 10 MiB body: %v, want healthy", err)
		case code == 503 && (err == nil || !strings.HasSuffix(err.Error(), ": 503")):
			t.Errorf("503 with a 10 MiB body: %v, want ...: 503", err)
		}
	}
}

func TestProbeHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	srv.StartTLS()
	defer srv.Close()
	spec := Spec{HTTP: srv.URL + "/health", Timeout: 5 * time.Second}
	err := Probe(context.Background(), spec, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "GET "+srv.URL+"/health: ") || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("self-signed without insecure-tls: %v, want a certificate error", err)
	}
	spec.InsecureTLS = true
	if err := Probe(context.Background(), spec, nil); err != nil {
		t.Errorf("self-signed with insecure-tls: %v, want healthy", err)
	}
}

// TestProbeHTTPNoProxy: a proxy from the environment must not carry
// health checks; here it points at a closed port.
func TestProbeHTTPNoProxy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	dead := closedAddr(t)
	t.Setenv("HTTP_PROXY", "http://"+dead)
	t.Setenv("http_proxy", "http://"+dead)
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	if err := Probe(context.Background(), Spec{HTTP: srv.URL, Timeout: 5 * time.Second}, nil); err != nil {
		t.Errorf("%v, want healthy (no proxy)", err)
	}
}

func TestProbeHTTPRefusedAndBadURL(t *testing.T) {
	dead := closedAddr(t)
	err := Probe(context.Background(), Spec{HTTP: "http://" + dead + "/x", Timeout: 5 * time.Second}, nil)
	want := "GET http://" + dead + "/x: dial tcp " + dead + ": connect: connection refused"
	if err == nil || err.Error() != want {
		t.Errorf("refused: %v, want %q", err, want)
	}
	err = Probe(context.Background(), Spec{HTTP: "ftp://127.0.0.1/x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "want http or https") {
		t.Errorf("ftp: %v", err)
	}
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
			close(accepted)
		}
	}()
	if err := Probe(context.Background(), Spec{TCP: ln.Addr().String(), Timeout: 5 * time.Second}, nil); err != nil {
		t.Errorf("listening: %v, want healthy", err)
	}
	<-accepted
	dead := closedAddr(t)
	err = Probe(context.Background(), Spec{TCP: dead, Timeout: 5 * time.Second}, nil)
	if want := "dial tcp " + dead + ": connect: connection refused"; err == nil || err.Error() != want {
		t.Errorf("closed port: %v, want %q", err, want)
	}
}

func TestProbeExec(t *testing.T) {
	for _, c := range []struct {
		argv []string
		want string
	}{
		{[]string{"/bin/true"}, ""},
		{[]string{"/bin/sh", "-c", "echo fine"}, ""},
		{[]string{"/bin/sh", "-c", "printf '\\n  endpoint ETH1 not validated  \\nmore\\n'; exit 3"},
			`exec /bin/sh -c "printf '\\n  endpoint ETH1 not validated  \\nmore\\n'; exit 3": exit code 3: endpoint ETH1 not validated`},
		{[]string{"/bin/false"}, "exec /bin/false: exit code 1"},
		{[]string{"/nonexistent/check"}, "exec /nonexistent/check: fork/exec /nonexistent/check: no such file or directory"},
	} {
		err := Probe(context.Background(), Spec{Exec: c.argv, Timeout: 10 * time.Second}, runExec)
		if c.want == "" && err != nil {
			t.Errorf("%q: %v, want healthy", c.argv, err)
		}
		if c.want != "" && (err == nil || err.Error() != c.want) {
			t.Errorf("%q: %v, want %q", c.argv, err, c.want)
		}
	}
	if err := Probe(context.Background(), Spec{Exec: []string{"/bin/true"}}, nil); err == nil {
		t.Error("exec without an ExecFunc: healthy")
	}
}

// TestProbeExecTimeoutKillsGroup: a check that outlives its timeout fails
// with "timeout after", and its whole process group goes, grandchildren
// included.
func TestProbeExecTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	script := fmt.Sprintf("sleep 600 & echo $! > %s; wait", pidFile)
	start := time.Now()
	err := Probe(context.Background(), Spec{Exec: []string{"/bin/sh", "-c", script}, Timeout: 300 * time.Millisecond}, runExec)
	if err == nil || err.Error() != "timeout after 300ms" {
		t.Fatalf("err = %v, want timeout after 300ms", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d outlived the check's timeout", pid)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// alive: the pid exists and is not a zombie (an orphaned, killed grandchild
// waits for init to reap it).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestProbeConfigErrors(t *testing.T) {
	if err := Probe(context.Background(), Spec{}, nil); err == nil {
		t.Error("no check: healthy")
	}
	if err := Probe(context.Background(), Spec{HTTP: "http://127.0.0.1:1/", TCP: "127.0.0.1:1"}, nil); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Errorf("two checks: %v", err)
	}
}

func TestProbeCancelledIsNotTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Probe(ctx, Spec{Exec: []string{"/bin/sh", "-c", "sleep 600"}, Timeout: time.Hour}, runExec)
	if err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("cancelled: %v, want a cancellation, not a timeout", err)
	}
}

// closedAddr is a 127.0.0.1 port that was just listened on and closed.
func closedAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
