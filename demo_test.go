package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scripts/demo removes the temp folder it made (~70 MB of builds) when
// lavavisor ends on Ctrl-C.
func TestDemoCleansItsTempFolder(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lavavisor")
	}
	tmp := t.TempDir()
	cmd := exec.Command("./scripts/demo")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "DEMO_UPGRADE_AFTER=never", "NO_COLOR=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := launch(t, cmd)
	// The demo builds lavavisor and two releases first: give it time.
	waitDemo(t, p, "service started", 3*time.Minute)
	made, _ := filepath.Glob(filepath.Join(tmp, "lavavisor-demo.*"))
	if len(made) != 1 {
		t.Fatalf("demo folders in TMPDIR: %v", made)
	}
	// Ctrl-C reaches the whole foreground process group.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Errorf("demo exit %d", code)
	}
	if _, err := os.Stat(made[0]); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", made[0], err)
	}
}

// The demo shows the pre-fetch (SPEC §8): a proposal appears in the file://
// source, the release server logs the download during the voting period, the
// vote passes, and the services move with no request after the change.
func TestDemoPrefetchesBeforeTheVote(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lavavisor")
	}
	cmd := exec.Command("./scripts/demo")
	// A slow timeline: the machine may be busy, the demo's own pace is 6 s.
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir(), "DEMO_UPGRADE_AFTER=24", "NO_COLOR=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := launch(t, cmd)
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		p.wait()
	}()
	waitDemo(t, p, "upgrade done", 4*time.Minute)
	out := p.out.String()
	installed := strings.Index(out, "release installed")
	passed := strings.Index(out, ">>> demo: the vote passes")
	if installed < 0 || passed < 0 || installed > passed || !strings.Contains(out[:passed], "GET /v6.2.6/lavap-v6.2.6-") {
		t.Fatalf("v6.2.6 was not pre-fetched before the vote:\n%s", out)
	}
	if after := out[passed:]; strings.Contains(after, "release server | GET") {
		t.Errorf("a request to the release server after the vote:\n%s", after)
	}
}

// waitDemo waits until the demo printed s.
func waitDemo(t *testing.T, p *proc, s string, patience time.Duration) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("demo exited (%d):\n%s", p.code, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not print %q:\n%s", s, p.out.String())
		}
	}
}
