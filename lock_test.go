package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const nobody = 65534

// runAsNobody runs lavavisor as uid/gid 65534 to its end. The binary's
// folder is opened to others so that nobody can run it.
func runAsNobody(t *testing.T, args ...string) (int, string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to run lavavisor as another user")
	}
	if err := os.Chmod(filepath.Dir(lavavisorBin), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lavavisorBin, args...)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	p := launch(t, cmd)
	return p.wait(), p.out.String()
}

// A user who owns nothing but can plant `.lavavisor/lock -> victim` does not
// get root's LavaVisor to write into the victim.
func TestStartRefusesPlantedLockSymlink(t *testing.T) {
	h := newTestHome(t)
	h.config("link: none\nservices:\n  - name: tool\n    command: /bin/true\n")
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o644)
	os.Symlink(victim, filepath.Join(h.root(), "lock"))
	before := snapshotTree(t, h.dir)
	for _, cmd := range []string{"start", "init"} {
		code, out := runLavavisor(t, "--directory", h.dir, "--node=file:///nonexistent.yml", cmd)
		if code != 1 || !strings.Contains(out, filepath.Join(h.root(), "lock")) || !strings.Contains(out, "symlink") || strings.Contains(out, "in use") {
			t.Errorf("%s: code %d, want 1 naming the symlinked lock\n%s", cmd, code, out)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("victim changed: %q", b)
	}
	assertUnchanged(t, before, snapshotTree(t, h.dir))
}

// A lock that cannot be opened is a permission problem, not a home in use.
func TestLockPermissionDeniedIsNotInUse(t *testing.T) {
	h := newTestHome(t)
	h.config("link: none\nservices:\n  - name: tool\n    command: /bin/true\n")
	os.WriteFile(filepath.Join(h.root(), "lock"), nil, 0o600)
	os.Chmod(h.dir, 0o755)
	before := snapshotTree(t, h.dir)
	code, out := runAsNobody(t, "--directory", h.dir, "--node=file:///nonexistent.yml", "start")
	want := fmt.Sprintf("cannot take the lock of home %s", h.root())
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "permission denied") || strings.Contains(out, "in use") {
		t.Errorf("code %d, want 1 and %q\n%s", code, want, out)
	}
	assertUnchanged(t, before, snapshotTree(t, h.dir))
}
