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

// installBlock returns the lines of the first ```sh block of the README's
// Install section.
func installBlock(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Install\n")
	if !ok {
		t.Fatal("README.md has no ## Install section")
	}
	_, block, ok := strings.Cut(section, "```sh\n")
	if !ok {
		t.Fatal("the Install section has no ```sh block")
	}
	block, _, _ = strings.Cut(block, "```")
	var lines []string
	for _, l := range strings.Split(block, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// TestREADMEInstall runs the README's Install sequence as a new user would,
// in a fresh $HOME: build, init, create-service, start. The lavavisor lines
// run verbatim (through sh); the node is a versions file and the releases
// come from a local release server. When the README's block changes shape,
// this test fails: change it with the README.
func TestREADMEInstall(t *testing.T) {
	lines := installBlock(t)
	words := func(l string) []string { c, _, _ := strings.Cut(l, "#"); return strings.Fields(c) }
	shape := len(lines) == 5 &&
		strings.HasPrefix(lines[0], "go build -o ") && words(lines[0])[len(words(lines[0]))-1] == "." &&
		strings.HasPrefix(lines[1], "export LAVAVISOR_NODE=") &&
		strings.HasPrefix(lines[2], "lavavisor init") &&
		strings.HasPrefix(lines[3], "lavavisor create-service provider provider.yml ") &&
		lines[4] == "lavavisor start"
	if !shape {
		t.Fatalf("the README's Install block changed shape; update this test with it:\n%s", strings.Join(lines, "\n"))
	}

	home, err := os.MkdirTemp("", "lvi") // short: the control socket's path is bounded
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	bin := filepath.Join(home, "bin")
	wd := filepath.Join(home, "work") // where the user types the commands
	os.MkdirAll(wd, 0o755)
	os.WriteFile(filepath.Join(wd, "provider.yml"), []byte("endpoints: []\n"), 0o644)

	// The build line, into the test's PATH.
	args := words(lines[0])
	for i := range args {
		if i > 0 && args[i-1] == "-o" {
			args[i] = filepath.Join(bin, "lavavisor")
		}
	}
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}

	versions := filepath.Join(home, "versions.yml")
	os.WriteFile(versions, []byte("provider_min: 6.2.6\nprovider_target: 6.2.6\nconsumer_min: 6.2.6\nconsumer_target: 6.2.6\n"), 0o644)
	rs := newReleaseServer(t)
	record := filepath.Join(home, "service.rec")
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "LAVAVISOR_") && !strings.HasPrefix(e, "HOME=") && !strings.HasPrefix(e, "PATH=") {
			env = append(env, e)
		}
	}
	env = append(env, "HOME="+home, "PATH="+bin+":/usr/bin:/bin", "NO_COLOR=1",
		"LAVAVISOR_NODE=file://"+versions,
		"LAVAVISOR_DOWNLOAD_URL="+rs.URL+"/v{version}/lavap-v{version}-{os}-{arch}",
		"LAVAVISOR_CHECKSUMS_URL="+rs.URL+"/v{version}/sha256sum.txt",
		"FAKE_RECORD="+record) // inherited by the service: the fake lavap records its start
	sh := func(line string) *exec.Cmd {
		cmd := exec.Command("/bin/sh", "-c", line)
		cmd.Dir, cmd.Env = wd, env
		return cmd
	}
	for _, l := range lines[2:4] {
		p := launch(t, sh(l))
		if code := p.wait(); code != 0 {
			t.Fatalf("%s: exit %d\n%s", l, code, p.out.String())
		}
	}
	if rs.downloads("6.2.6") != 1 {
		t.Errorf("init downloaded v6.2.6 %d times, want 1", rs.downloads("6.2.6"))
	}

	p := launch(t, sh("exec "+lines[4]))
	var pid int
	p.waitFor("the service to start", func() bool {
		b, _ := os.ReadFile(record)
		_, err := fmt.Sscanf(string(b), "start %d", &pid)
		return err == nil
	})
	root := filepath.Join(home, ".lavavisor")
	if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); cwd != filepath.Join(root, "services", "provider") {
		t.Errorf("the service runs in %q, want %s", cwd, filepath.Join(root, "services", "provider"))
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != filepath.Join(root, "upgrades", "v6.2.6", "lavap") {
		t.Errorf("the service runs %q", exe)
	}
	p.waitLog("home=" + root)
	if _, err := os.Lstat(filepath.Join(wd, "~")); err == nil {
		t.Error("a folder literally named ~ was made")
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("start: exit %d\n%s", code, p.out.String())
	}
}
