package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// openFiles lists what the descriptors of pid point at, by fd.
func openFiles(pid int) map[string]string {
	out := map[string]string{}
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range entries {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil {
			out[e.Name()] = target
		}
	}
	return out
}

// childrenOf lists the children of pid, forked by any of its threads.
func childrenOf(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, file := range files {
		b, _ := os.ReadFile(file)
		for _, f := range strings.Fields(string(b)) {
			var c int
			fmt.Sscan(f, &c)
			out = append(out, c)
		}
	}
	return out
}

// A descriptor LavaVisor inherited (`(exec 7<secret; lavavisor start)`) does
// not reach its services, as PID 1 or not.
func TestServicesInheritOnlyStdio(t *testing.T) {
	for _, pid1 := range []bool{false, true} {
		t.Run(fmt.Sprintf("pid1=%v", pid1), func(t *testing.T) {
			h := newTestHome(t)
			h.place("6.2.5")
			h.link("6.2.5")
			h.config("node: file:///x.yml\nservices:\n" + h.service("p1", ""))
			secret := filepath.Join(t.TempDir(), "secret")
			os.WriteFile(secret, []byte("key"), 0o600)
			f, err := os.Open(secret)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			args := []string{"--directory", h.dir, "start"}
			var cmd *exec.Cmd
			if pid1 {
				cmd = exec.Command("unshare", append([]string{"--fork", "--pid", "--mount-proc", "--kill-child", lavavisorBin}, args...)...)
			} else {
				cmd = exec.Command(lavavisorBin, args...)
			}
			cmd.Env = append(os.Environ(), "NO_COLOR=1")
			cmd.ExtraFiles = []*os.File{f, f, f, f, f} // fds 3 to 7
			p := launch(t, cmd)
			p.waitFor("p1 started", func() bool { return h.count("p1", "start") == 1 })
			lv := p.cmd.Process.Pid
			if pid1 {
				p.waitFor("lavavisor's pid", func() bool { return len(childrenOf(lv)) == 1 })
				lv = childrenOf(lv)[0]
			}
			// The test means something only if lavavisor did inherit it.
			if fd7 := openFiles(lv)["7"]; fd7 != secret {
				t.Fatalf("lavavisor's fd 7 is %q, want %s", fd7, secret)
			}
			var svc int
			p.waitFor("the service's process", func() bool {
				kids := childrenOf(lv)
				if len(kids) == 1 {
					svc = kids[0]
				}
				return svc != 0
			})
			for fd, target := range openFiles(svc) {
				if target == secret {
					t.Errorf("service pid %d has the secret open on fd %s", svc, fd)
				}
			}
			if len(openFiles(svc)) < 3 {
				t.Errorf("service's fds not read: %v", openFiles(svc))
			}
		})
	}
}
