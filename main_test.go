package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Built once in TestMain: the lavavisor binary and fake lavap releases.
var (
	lavavisorBin string
	fakeBuilds   string // folder holding fake lavap builds by version: <dir>/<version>/lavap
	// proposalBuilds holds fake builds of the versions the recorded proposals
	// 11 and 12 carry (chain/testdata/gov: 6.3.0, 6.3.1), kept apart from
	// fakeBuilds, whose release server must answer 404 for them elsewhere.
	proposalBuilds string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lavavisor-e2e")
	if err != nil {
		panic(err)
	}
	lavavisorBin = filepath.Join(dir, "lavavisor")
	fakeBuilds = filepath.Join(dir, "fakes")
	build := func(out string, args ...string) {
		cmd := exec.Command("go", append([]string{"build", "-o", out}, args...)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %v: %v\n%s", args, err, b)
			os.Exit(1)
		}
	}
	// LAVAVISOR_MUTANT switches one of issue 10's bugs back on (package
	// internal/mutant): the simulation's mutation check.
	tags := "-tags="
	if os.Getenv("LAVAVISOR_MUTANT") != "" {
		tags += "lavavisor_mutants"
	}
	build(lavavisorBin, tags, "-ldflags", "-X main.version=0.1.0-test", ".")
	for _, v := range []string{"6.2.5", "6.2.6", "6.2.7"} {
		build(filepath.Join(fakeBuilds, v, "lavap"), "-ldflags", "-X main.version="+v, "./testdata/fakelavap")
	}
	// 6.2.8 has no version command (old releases); 6.2.9 reports a lagging
	// number, as real v6.1.1 to v6.2.4 report 6.1.0.
	build(filepath.Join(fakeBuilds, "6.2.8", "lavap"), "-ldflags", "-X main.version=6.2.8 -X main.noVersion=yes", "./testdata/fakelavap")
	build(filepath.Join(fakeBuilds, "6.2.9", "lavap"), "-ldflags", "-X main.version=6.1.0", "./testdata/fakelavap")
	proposalBuilds = filepath.Join(dir, "proposal-fakes")
	for _, v := range []string{"6.3.0", "6.3.1"} {
		build(filepath.Join(proposalBuilds, v, "lavap"), "-ldflags", "-X main.version="+v, "./testdata/fakelavap")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testHome is a LavaVisor home with fake releases placed by hand.
type testHome struct {
	t   *testing.T
	dir string   // --directory
	env []string // added to the environment of the lavavisor it starts
}

func newTestHome(t *testing.T) *testHome {
	t.Helper()
	// Short: the control socket's path must fit in a unix socket address
	// (107 bytes), and t.TempDir() under a long test name leaves no room.
	dir, err := os.MkdirTemp("", "lv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &testHome{t: t, dir: dir}
}

func (h *testHome) root() string { return filepath.Join(h.dir, ".lavavisor") }

// place copies a fake release into upgrades/v<version>/lavap.
func (h *testHome) place(version string) {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(fakeBuilds, version, "lavap"))
	if err != nil {
		h.t.Fatal(err)
	}
	// Placed whole, as an operator should (README): written under another
	// name in its folder (the same filesystem, a tmpfs or not), then
	// renamed. A running LavaVisor that looked at a half-written binary
	// would adopt it as it was, and the whole one would then fail its
	// manifest (TestRestartDuringProbationEndsIt, under load).
	dir := filepath.Join(h.root(), "upgrades", "v"+version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	tmp, err := os.CreateTemp(dir, ".place-*")
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := tmp.Write(b); err != nil {
		h.t.Fatal(err)
	}
	if err := tmp.Chmod(0o755); err != nil {
		h.t.Fatal(err)
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "lavap")); err != nil {
		h.t.Fatal(err)
	}
}

// link points current at a placed release, as `lavavisor init` does.
func (h *testHome) link(version string) {
	h.t.Helper()
	cur := filepath.Join(h.root(), "current")
	os.Remove(cur)
	if err := os.Symlink(filepath.Join("upgrades", "v"+version), cur); err != nil {
		h.t.Fatal(err)
	}
}

func (h *testHome) config(body string) {
	h.t.Helper()
	if err := os.MkdirAll(h.root(), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.root(), "config.yml"), []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *testHome) record(name string) string { return filepath.Join(h.dir, name+".rec") }

func (h *testHome) events(name string) []string {
	b, _ := os.ReadFile(h.record(name))
	return strings.FieldsFunc(string(b), func(r rune) bool { return r == '\n' })
}

func (h *testHome) count(name, event string) int {
	n := 0
	for _, l := range h.events(name) {
		if strings.HasPrefix(l, event+" ") {
			n++
		}
	}
	return n
}

// pids of the started processes of a service, in order.
func (h *testHome) pids(name string) []int {
	var out []int
	for _, l := range h.events(name) {
		var pid int
		if _, err := fmt.Sscanf(l, "start %d", &pid); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// service is a config.yml service block for a fake lavap recording to a file.
func (h *testHome) service(name string, extra string, env ...string) string {
	s := fmt.Sprintf("  - name: %s\n    args: [rpcprovider, %s.yml, --from, op]\n    env: {FAKE_RECORD: %q", name, name, h.record(name))
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		s += fmt.Sprintf(", %s: %q", k, v)
	}
	s += "}\n"
	for _, l := range strings.Split(strings.TrimSpace(extra), "\n") {
		if l != "" {
			s += "    " + l + "\n"
		}
	}
	return s
}

// proc is a running lavavisor.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	code int
	// ended is when it exited: read only after done is closed.
	ended time.Time
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (h *testHome) start(args ...string) *proc {
	h.t.Helper()
	cmd := exec.Command(lavavisorBin, append([]string{"--directory", h.dir}, args...)...)
	cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), h.env...)
	return launch(h.t, cmd)
}

func startLavavisor(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProc(t, lavavisorBin, args...)
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	return launch(t, cmd)
}

// launch starts cmd with its output captured, waits for it in the
// background, and kills it when the test ends.
func launch(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		p.ended = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%v output:\n%s", p.cmd.Args, p.out.String())
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// wait returns the exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(20 * time.Second):
		p.t.Fatalf("lavavisor did not exit; output:\n%s", p.out.String())
	}
	return 0
}

func (p *proc) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		select {
		case <-p.done:
			p.t.Fatalf("lavavisor exited (%d) while waiting for %s", p.code, what)
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *proc) waitLog(s string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("log %q", s), func() bool { return strings.Contains(p.out.String(), s) })
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && len(b) > i+2 && b[i+2] != 'Z'
}

// runLavavisor runs a command to its end and returns code and output.
func runLavavisor(t *testing.T, args ...string) (int, string) {
	t.Helper()
	p := startLavavisor(t, args...)
	return p.wait(), p.out.String()
}
