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
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(p.out.String(), "service started") {
		select {
		case <-p.done:
			t.Fatalf("demo exited (%d):\n%s", p.code, p.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo did not start its services:\n%s", p.out.String())
		}
	}
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
