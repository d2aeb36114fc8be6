package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// twoServices is a home running two fake providers on v6.2.5.
func twoServices(t *testing.T, extra string, env ...string) *testHome {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	if !strings.Contains(extra, "stop-timeout") {
		extra += "stop-timeout: 5s\n"
	}
	h.config("node: file:///nonexistent/versions.yml\n" + extra + "services:\n" +
		h.service("provider-eth", "", env...) + h.service("provider-lava", "", env...))
	return h
}

func TestStartRunsServicesAndStopsGracefully(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			h := twoServices(t, "", "FAKE_TICK=10ms")
			p := h.start("start")
			p.waitFor("both started", func() bool { return h.count("provider-eth", "start") == 1 && h.count("provider-lava", "start") == 1 })
			p.waitLog("provider-lava | INF fake lavap 6.2.5 serving")
			p.waitLog("provider-eth  | INF fake lavap 6.2.5 serving")
			p.signal(sig)
			if code := p.wait(); code != 0 {
				t.Fatalf("exit code %d, want 0", code)
			}
			for _, name := range []string{"provider-eth", "provider-lava"} {
				pid := h.pids(name)[0]
				if !contains(h.events(name), fmt.Sprintf("signal %d 6.2.5 INT", pid)) || alive(pid) {
					t.Errorf("%s: events %q", name, h.events(name))
				}
				// The argv is the release's lavap and the config args.
				if ev := h.events(name)[0]; !strings.HasSuffix(ev, "rpcprovider "+name+".yml --from op") {
					t.Errorf("%s started with %q", name, ev)
				}
			}
			if !strings.Contains(p.out.String(), "stopping services") {
				t.Errorf("no shutdown trace:\n%s", p.out.String())
			}
		})
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func TestSecondSignalKillsAtOnce(t *testing.T) {
	h := twoServices(t, "stop-timeout: 1h\n", "FAKE_IGNORE=1")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("provider-eth", "start") == 1 && h.count("provider-lava", "start") == 1 })
	p.signal(syscall.SIGTERM)
	p.waitFor("stop signals delivered", func() bool { return h.count("provider-eth", "signal") == 1 && h.count("provider-lava", "signal") == 1 })
	p.signal(syscall.SIGINT)
	if code := p.wait(); code != 1 {
		t.Fatalf("exit code %d, want 1 after a forced stop", code)
	}
	for _, name := range []string{"provider-eth", "provider-lava"} {
		if alive(h.pids(name)[0]) {
			t.Errorf("%s survived", name)
		}
	}
}

func TestSIGKILLOfLavavisorLeavesNoChild(t *testing.T) {
	h := twoServices(t, "", "FAKE_IGNORE=1")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("provider-eth", "start") == 1 && h.count("provider-lava", "start") == 1 })
	p.signal(syscall.SIGKILL)
	p.wait()
	for _, name := range []string{"provider-eth", "provider-lava"} {
		pid := h.pids(name)[0]
		p.waitFor2(t, name+" gone", func() bool { return !alive(pid) })
	}
}

// waitFor2 polls after the process has exited.
func (p *proc) waitFor2(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSecondStartOnSameHomeExits1(t *testing.T) {
	h := twoServices(t, "")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("provider-eth", "start") == 1 })
	code, out := runLavavisor(t, "--directory", h.dir, "start")
	if code != 1 || !strings.Contains(out, fmt.Sprintf("held by pid %d", p.cmd.Process.Pid)) {
		t.Fatalf("second start: code %d, output:\n%s", code, out)
	}
	if h.count("provider-eth", "start") != 1 {
		t.Error("second start started a service")
	}
}

func TestStartWithoutCurrentSaysRunInit(t *testing.T) {
	h := newTestHome(t)
	h.config("services:\n" + h.service("a", ""))
	code, out := runLavavisor(t, "--directory", h.dir, "start")
	if code != 1 || !strings.Contains(out, "run `lavavisor init`") {
		t.Fatalf("code %d, output:\n%s", code, out)
	}
}

func TestBadConfigExits1WithLine(t *testing.T) {
	h := newTestHome(t)
	h.config("services:\n  - name: Bad_Name\n    args: [lavap, rpcprovider]\n")
	code, out := runLavavisor(t, "--directory", h.dir, "start")
	if code != 1 || !strings.Contains(out, "config.yml:2") || !strings.Contains(out, "config.yml:3") {
		t.Fatalf("code %d, output:\n%s", code, out)
	}
}

func TestUsageErrorExits2(t *testing.T) {
	for _, args := range [][]string{{"start", "--no-such-flag"}, {"no-such-command"}, {"--log-format", "xml", "start"}} {
		if code, out := runLavavisor(t, args...); code != 2 {
			t.Errorf("%v: code %d, output:\n%s", args, code, out)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	code, out := runLavavisor(t, "version")
	if code != 0 || strings.TrimSpace(out) != "0.1.0-test" {
		t.Fatalf("code %d, output %q", code, out)
	}
}

func TestStartEndsWhenEveryServiceEnded(t *testing.T) {
	for _, c := range []struct {
		codes string
		want  int
	}{{"0", 0}, {"3", 1}} {
		h := newTestHome(t)
		h.place("6.2.5")
		h.link("6.2.5")
		h.config("node: file:///x.yml\nrestart: never\nservices:\n" + h.service("a", "", "FAKE_EXIT=0") + h.service("b", "", "FAKE_EXIT="+c.codes))
		code, out := runLavavisor(t, "--directory", h.dir, "start")
		if code != c.want {
			t.Errorf("exit codes 0,%s: lavavisor exit %d, want %d\n%s", c.codes, code, c.want, out)
		}
		// Nothing was stopped: no "stopping services ... waiting_for=nothing".
		if strings.Contains(out, "stopping services") || !strings.Contains(out, "every service has ended") {
			t.Errorf("misleading end of run:\n%s", out)
		}
	}
}

func TestSIGHUPAppliesConfigChanges(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	base := "node: file:///x.yml\n"
	h.config(base + "services:\n" + h.service("same", "") + h.service("changed", "") + h.service("removed", ""))
	p := h.start("start")
	p.waitFor("started", func() bool {
		return h.count("same", "start") == 1 && h.count("changed", "start") == 1 && h.count("removed", "start") == 1
	})
	pSame, pChanged := h.pids("same")[0], h.pids("changed")[0]

	// A broken config is logged and ignored.
	h.config(base + "services:\n  - name: oops\n    args: []\n")
	p.signal(syscall.SIGHUP)
	p.waitLog("new config not applied")

	h.config(base + "stop-timeout: 3s\nservices:\n" + h.service("same", "") + h.service("changed", "", "NEW=1") + h.service("added", ""))
	p.signal(syscall.SIGHUP)
	p.waitFor("changes applied", func() bool {
		return h.count("changed", "start") == 2 && h.count("added", "start") == 1 && h.count("removed", "exit") == 1
	})
	if h.count("same", "start") != 1 || !alive(pSame) || alive(pChanged) {
		t.Errorf("same restarted or changed still alive: %q", h.events("same"))
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestMissingCommandLogsClearErrorOthersRun(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	bin := filepath.Join(h.dir, "tool")
	os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755)
	h.config("node: file:///x.yml\nservices:\n" + h.service("good", "") + "  - name: tool\n    command: " + bin + "\n    args: [x]\n")
	p := h.start("start")
	p.waitFor("good started", func() bool { return h.count("good", "start") == 1 })
	os.Remove(bin) // vanishes after the config check: its next start fails
	p.waitLog("no such file or directory")
	if !alive(h.pids("good")[0]) {
		t.Error("good service died")
	}
}

func TestPodExitsWithChildCode(t *testing.T) {
	h := newTestHome(t)
	code, out := runLavavisor(t, "--directory", h.dir, "pod", "--restart", "never", "--", "sh", "-c", "exit 7")
	if code != 7 {
		t.Errorf("exit 7: got %d\n%s", code, out)
	}
	code, out = runLavavisor(t, "--directory", h.dir, "pod", "--restart", "never", "--cmd", `sh -c 'kill -9 $$'`)
	if code != 137 {
		t.Errorf("killed by 9: got %d\n%s", code, out)
	}
}

func TestPodRunsCurrentLavap(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	os.Setenv("FAKE_RECORD", h.record("pod"))
	defer os.Unsetenv("FAKE_RECORD")
	p := h.start("wrap", "--", "lavap", "rpcprovider", "provider.yml")
	p.waitFor("started", func() bool { return h.count("pod", "start") == 1 })
	p.waitLog("release=v6.2.5")
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !contains(h.events("pod"), fmt.Sprintf("signal %d 6.2.5 INT", h.pids("pod")[0])) {
		t.Errorf("events %q", h.events("pod"))
	}
}

func TestPodWithoutCommandIsUsageError(t *testing.T) {
	if code, out := runLavavisor(t, "--directory", t.TempDir(), "pod"); code != 2 {
		t.Errorf("code %d\n%s", code, out)
	}
}

// TestReapsOrphansAsPID1 runs lavavisor as PID 1 of a new PID namespace.
func TestReapsOrphansAsPID1(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare is required (util-linux)")
	}
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.config("node: file:///x.yml\nservices:\n" +
		h.service("orphans", "restart: on-failure", "FAKE_ORPHANS=50") +
		h.service("exits3", "restart: never", "FAKE_EXIT=3", "FAKE_DELAY=300ms") +
		h.service("keeps", ""))
	p := startProc(t, "unshare", "--fork", "--pid", "--mount-proc", "--kill-child", lavavisorBin, "--log-level", "debug", "--directory", h.dir, "start")
	p.waitLog("FTL fake lavap exiting with 3")
	p.waitFor("50 orphans reaped", func() bool { return strings.Count(p.out.String(), "reaped orphan") == 50 })
	p.waitLog("service=exits3")
	// lavavisor is the one child of unshare; it is PID 1 inside.
	var pid1 int
	p.waitFor("lavavisor's pid", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid))
		_, err := fmt.Sscan(string(b), &pid1)
		return err == nil
	})
	p.waitFor("no zombie left", func() bool { return zombiesOf(pid1) == 0 })
	if !strings.Contains(p.out.String(), "exit code 3") {
		t.Error("exits3's exit status was lost")
	}
	if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// zombiesOf counts zombie children of pid.
func zombiesOf(pid int) int {
	n := 0
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 1 && fields[0] == "Z" && fields[1] == fmt.Sprint(pid) {
			n++
		}
	}
	return n
}

// A closed terminal (the read end of its output gone) must not kill
// LavaVisor with SIGPIPE, nor stop its services.
func TestClosedOutputDoesNotKill(t *testing.T) {
	h := twoServices(t, "", "FAKE_TICK=5ms")
	cmd, r, done := startPiped(t, h)
	buf := make([]byte, 4096)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	r.Close() // the terminal goes away
	p := &proc{t: t, done: make(chan struct{})}
	p.waitFor2(t, "both services started", func() bool { return h.count("provider-eth", "start") == 1 && h.count("provider-lava", "start") == 1 })
	pid := h.pids("provider-eth")[0]
	// LavaVisor logs into the closed pipe (ticks, and the forwarding line)
	// and still forwards the signal: it is alive and working.
	cmd.Process.Signal(syscall.SIGUSR1)
	p.waitFor2(t, "USR1 forwarded", func() bool { return h.count("provider-eth", "signal") == 1 })
	if !alive(pid) || !alive(cmd.Process.Pid) || h.count("provider-eth", "start") != 1 {
		t.Fatal("a service or lavavisor died after the output closed")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	done <- nil
}

// A paused output (a reader that stops reading, as a terminal under Ctrl-S)
// stops neither the services nor a graceful stop.
func TestPausedOutputFreezesNothing(t *testing.T) {
	h := twoServices(t, "", "FAKE_SPAM=200000", "FAKE_TICK=1ms")
	cmd, r, done := startPiped(t, h)
	defer r.Close()
	// Nobody reads r: the pipe fills at once. The services still start,
	// write their 20 MB, and get forwarded signals.
	p := &proc{t: t}
	p.waitFor2(t, "both started", func() bool { return h.count("provider-eth", "start") == 1 && h.count("provider-lava", "start") == 1 })
	cmd.Process.Signal(syscall.SIGUSR1)
	p.waitFor2(t, "USR1 forwarded", func() bool {
		return h.count("provider-eth", "signal") == 1 && h.count("provider-lava", "signal") == 1
	})
	cmd.Process.Signal(syscall.SIGTERM)
	p.waitFor2(t, "services stopped", func() bool { return h.count("provider-eth", "exit") == 1 && h.count("provider-lava", "exit") == 1 })
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
		done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("lavavisor did not exit with its output paused")
	}
}

// startPiped starts `lavavisor start` on h with its output into a pipe the
// test controls; done receives Wait's result once, and is refilled by tests
// that consume it so that the cleanup's receive never blocks.
func startPiped(t *testing.T, h *testHome) (*exec.Cmd, *os.File, chan error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lavavisorBin, "--directory", h.dir, "start")
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd, r, done
}
