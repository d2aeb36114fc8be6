package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
)

// newPassword is unique per test, so that finding it anywhere is a leak.
func newPassword(t *testing.T) string {
	b := make([]byte, 12)
	rand.Read(b)
	return "kr-" + hex.EncodeToString(b)
}

// stdinHash is what the fake lavap records for a line read from stdin.
func stdinHash(line string) string {
	sum := sha256.Sum256([]byte(line))
	return hex.EncodeToString(sum[:8])
}

// stdinRecords are the hashes a service's processes recorded, in order.
func (h *testHome) stdinRecords(name string) []string {
	var out []string
	for _, l := range h.events(name) {
		if f := strings.Fields(l); len(f) == 4 && f[0] == "stdin" {
			out = append(out, f[3])
		}
	}
	return out
}

func writePasswordFile(t *testing.T, pw string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyring-password")
	if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keyringHome runs "signer" (keyring-password: true) beside "other"; both
// record a line of stdin, so other's record shows what it got: nothing.
func keyringHome(t *testing.T) *testHome {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	h.config(fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: 100ms\nlink: none\nstop-timeout: 5s\nservices:\n", h.dir) +
		h.service("signer", "keyring-password: true", "FAKE_STDIN=1") + h.service("other", "", "FAKE_STDIN=1"))
	return h
}

// startWith starts lavavisor with the given stdin and extra environment.
func startWith(t *testing.T, stdin io.Reader, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(lavavisorBin, args...)
	cmd.Stdin = stdin
	cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	return launch(t, cmd)
}

// descendants lists the live processes under pid (every thread's children:
// a child is listed under the thread that forked it).
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			var c int
			fmt.Sscan(s, &c)
			out = append(out, c)
			out = append(out, descendants(c)...)
		}
	}
	return out
}

// assertNoPassword checks the argv and environment of lavavisor and of every
// process under it, and the other places a secret could leak to.
func assertNoPassword(t *testing.T, pw string, h *testHome, p *proc) {
	t.Helper()
	pids := append([]int{p.cmd.Process.Pid}, descendants(p.cmd.Process.Pid)...)
	if len(pids) < 3 {
		t.Errorf("expected lavavisor and two services, found pids %v", pids)
	}
	for _, pid := range pids {
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if err != nil {
				t.Fatalf("read /proc/%d/%s: %v", pid, f, err)
			}
			if strings.Contains(string(b), pw) {
				t.Errorf("the password is in /proc/%d/%s", pid, f)
			}
		}
	}
	code, out := runLavavisor(t, "--directory", h.dir, "status", "--json")
	if code != 0 || strings.Contains(out, pw) {
		t.Errorf("status --json: exit %d, password present: %v", code, strings.Contains(out, pw))
	}
	filepath.Walk(h.root(), func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() < 1<<20 {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), pw) {
				t.Errorf("the password is in %s", path)
			}
		}
		return nil
	})
}

func TestKeyringPasswordReachesOnlyItsService(t *testing.T) {
	pw := newPassword(t)
	pwFile := writePasswordFile(t, pw)
	for _, c := range []struct {
		name  string
		stdin io.Reader
		args  []string
	}{
		{"file-text-logs", nil, []string{"--log-level", "debug", "start", "--keyring-password-file", pwFile}},
		{"stdin-json-logs", strings.NewReader(pw + "\n"), []string{"--log-level", "debug", "--log-format", "json", "start", "--enter-keyring-password"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := keyringHome(t)
			p := startWith(t, c.stdin, nil, append([]string{"--directory", h.dir}, c.args...)...)
			p.waitFor("both read stdin", func() bool { return len(h.stdinRecords("signer")) == 1 && len(h.stdinRecords("other")) == 1 })
			if got := h.stdinRecords("signer")[0]; got != stdinHash(pw) {
				t.Errorf("signer read a line with hash %s, want the password's %s", got, stdinHash(pw))
			}
			if got := h.stdinRecords("other")[0]; got != stdinHash("") {
				t.Errorf("other read a line with hash %s, want nothing (%s)", got, stdinHash(""))
			}
			// Each start gets it again.
			syscall.Kill(h.pids("signer")[0], syscall.SIGKILL)
			p.waitFor("signer restarted and fed", func() bool { return len(h.stdinRecords("signer")) == 2 })
			if got := h.stdinRecords("signer")[1]; got != stdinHash(pw) {
				t.Errorf("restarted signer read %s, want %s", got, stdinHash(pw))
			}
			p.waitFor("other still running", func() bool { return alive(h.pids("other")[0]) })
			assertNoPassword(t, pw, h, p)
			p.signal(syscall.SIGTERM)
			if code := p.wait(); code != 0 {
				t.Fatalf("exit %d", code)
			}
			out := p.out.String()
			if strings.Contains(out, pw) {
				t.Error("the password is in lavavisor's output")
			}
			if !strings.Contains(out, "level") && !strings.Contains(out, "DEBUG") {
				t.Errorf("no debug output to check:\n%s", out)
			}
		})
	}
}

func TestKeyringPasswordPodAndInit(t *testing.T) {
	pw := newPassword(t)
	pwFile := writePasswordFile(t, pw)

	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	env := []string{"FAKE_RECORD=" + h.record("pod"), "FAKE_STDIN=1"}
	p := startWith(t, nil, env, "--directory", h.dir, "--log-level", "debug", "pod", "--keyring-password-file", pwFile, "--", "lavap", "rpcprovider", "p.yml")
	p.waitFor("pod fed", func() bool { return len(h.stdinRecords("pod")) == 1 })
	if got := h.stdinRecords("pod")[0]; got != stdinHash(pw) {
		t.Errorf("pod read %s, want %s", got, stdinHash(pw))
	}
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", h.pids("pod")[0])); strings.Contains(string(b), pw) {
		t.Error("the password is in the pod's argv")
	}
	p.signal(syscall.SIGTERM)
	p.wait()
	if strings.Contains(p.out.String(), pw) {
		t.Error("the password is in pod's output")
	}

	// init --auto-start hands the flags to start.
	h = keyringHome(t)
	p = startWith(t, nil, nil, "--directory", h.dir, "init", "--auto-start", "--keyring-password-file", pwFile)
	p.waitFor("signer fed", func() bool { return len(h.stdinRecords("signer")) == 1 })
	if got := h.stdinRecords("signer")[0]; got != stdinHash(pw) {
		t.Errorf("init --auto-start: signer read %s, want %s", got, stdinHash(pw))
	}
	p.signal(syscall.SIGTERM)
	p.wait()
}

func TestKeyringPasswordWithoutSourceIsAStartupError(t *testing.T) {
	h := keyringHome(t)
	want := "service signer has keyring-password: true, but no keyring password is given: use --keyring-password-file PATH or --enter-keyring-password"
	code, out := runLavavisor(t, "--directory", h.dir, "start")
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("code %d, want 1 and %q:\n%s", code, want, out)
	}
	if h.count("signer", "start")+h.count("other", "start") != 0 {
		t.Error("a service started")
	}
	if _, err := os.Stat(filepath.Join(h.root(), "state.json")); !os.IsNotExist(err) {
		t.Errorf("state.json written: %v", err)
	}

	// A reload that adds such a service is refused; the running ones stay.
	h = newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	base := "node: file:///x.yml\nlink: none\nservices:\n" + h.service("other", "")
	h.config(base)
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("other", "start") == 1 })
	h.config(base + h.service("signer", "keyring-password: true"))
	p.signal(syscall.SIGHUP)
	p.waitLog("new config not applied")
	p.waitLog("service signer has keyring-password: true, but no keyring password is given")
	if h.count("signer", "start") != 0 || !alive(h.pids("other")[0]) {
		t.Error("the refused config was applied")
	}
	p.signal(syscall.SIGTERM)
	p.wait()

	// Both flags at once is a usage error.
	code, out = runLavavisor(t, "--directory", h.dir, "start", "--keyring-password-file", "/x", "--enter-keyring-password")
	if code != 2 || !strings.Contains(out, "--keyring-password-file") {
		t.Errorf("both flags: code %d\n%s", code, out)
	}
}

// TestKeyringPasswordFileUnreadable runs lavavisor as nobody (tests run as
// root, who reads any file) with a root-only password file.
func TestKeyringPasswordFileUnreadable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run lavavisor as another user")
	}

	// nobody must reach the binary and the home.
	if err := os.Chmod(filepath.Dir(lavavisorBin), 0o755); err != nil {
		t.Fatal(err)
	}
	h := keyringHome(t)
	// t.TempDir() makes <tmp>/<test><n>/001, both 0700.
	os.Chmod(filepath.Dir(h.dir), 0o755)
	filepath.Walk(h.dir, func(path string, _ os.FileInfo, err error) error {
		if err == nil {
			err = os.Lchown(path, nobody, nobody)
		}
		return err
	})
	pwFile := writePasswordFile(t, "secret")
	os.Chmod(filepath.Dir(pwFile), 0o755)
	os.Chmod(filepath.Dir(filepath.Dir(pwFile)), 0o755)

	p := &proc{t: t, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(lavavisorBin, "--directory", h.dir, "start", "--keyring-password-file", pwFile)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "NO_COLOR=1")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	if err := p.cmd.Run(); err == nil {
		t.Fatalf("lavavisor started as nobody with an unreadable password file:\n%s", p.out.String())
	}
	out := p.out.String()
	if code := p.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(out, "keyring password file: open "+pwFile+": permission denied") {
		t.Fatalf("code %d, output:\n%s", code, out)
	}
	if h.count("signer", "start")+h.count("other", "start") != 0 {
		t.Error("a service started")
	}
	if _, err := os.Lstat(h.socketPath()); !os.IsNotExist(err) {
		t.Errorf("socket made: %v", err)
	}
}

// openPTY opens a pseudo-terminal pair.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pts: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// TestKeyringPasswordPromptOnTerminal types the password on a terminal: it
// is prompted for, not echoed, and reaches the service.
func TestKeyringPasswordPromptOnTerminal(t *testing.T) {
	master, slave := openPTY(t)
	pw := newPassword(t)
	h := keyringHome(t)
	p := startWith(t, slave, nil, "--directory", h.dir, "start", "--enter-keyring-password")
	echoed := &lockedBuffer{}
	go io.Copy(echoed, master)
	p.waitLog("Keyring password: ")
	p.waitFor("echo off", func() bool {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&unix.ECHO == 0
	})
	if _, err := master.Write([]byte(pw + "\n")); err != nil {
		t.Fatal(err)
	}
	p.waitFor("signer fed", func() bool { return len(h.stdinRecords("signer")) == 1 })
	if got := h.stdinRecords("signer")[0]; got != stdinHash(pw) {
		t.Errorf("signer read %s, want %s", got, stdinHash(pw))
	}
	p.waitFor("echo restored", func() bool {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&unix.ECHO != 0
	})
	p.signal(syscall.SIGTERM)
	p.wait()
	if strings.Contains(echoed.String(), pw) || strings.Contains(p.out.String(), pw) {
		t.Errorf("the password was echoed or logged: terminal %q", echoed.String())
	}
}

func TestFirstLine(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"secret\n", "secret", ""},
		{"secret", "secret", ""},
		{"secret\r\nsecond line\n", "secret", ""},
		{" spaced pass \n", " spaced pass ", ""},
		{"\n", "", "the password is empty"},
		{"", "", "the password is empty"},
		{strings.Repeat("x", maxPassword) + "\n", strings.Repeat("x", maxPassword), ""},
		{strings.Repeat("x", maxPassword+1) + "\n", "", "longer than 4096 bytes"},
		{strings.Repeat("x", 10000), "", "longer than 4096 bytes"},
	} {
		got, err := firstLine(strings.NewReader(c.in))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%.20q: err %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("%.20q: %q %v, want %q", c.in, got, err, c.want)
		}
	}
}

func TestKeyringPasswordFileErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "keyring password file: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{empty, "keyring password file " + empty + ": the password is empty"},
		{dir, "keyring password file " + dir + ": read " + dir + ": is a directory"},
	} {
		_, err := passwordFromFile(c.path)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.path, err, c.want)
		}
	}
}

func TestKeyringPasswordApply(t *testing.T) {
	cfg := &config.Config{Services: []config.Service{{Name: "a", KeyringPassword: true}, {Name: "b"}}}
	k := &keyringPassword{flags: keyringFlags{KeyringPasswordFile: "x"}, wants: keyringServices, secret: []byte("pw")}
	specs := k.apply(cfg, []supervisor.Spec{{Name: "a"}, {Name: "b"}})
	if string(specs[0].Stdin) != "pw" || specs[1].Stdin != nil {
		t.Errorf("stdin a=%q b=%q", specs[0].Stdin, specs[1].Stdin)
	}
	var none *keyringPassword
	if none.check(cfg) != nil || none.apply(cfg, specs) == nil {
		t.Error("a nil keyringPassword must do nothing")
	}
}

// A stop signal at the password prompt (SPEC §6.8 point 5): the prompt is
// cancelled, the terminal's echo comes back, nothing starts, exit 0.
func TestKeyringPasswordPromptIsCancellable(t *testing.T) {
	master, slave := openPTY(t)
	h := keyringHome(t)
	p := startWith(t, slave, nil, "--directory", h.dir, "start", "--enter-keyring-password")
	go io.Copy(io.Discard, master)
	p.waitLog("Keyring password: ")
	p.waitFor("echo off", func() bool {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&unix.ECHO == 0
	})
	p.signal(syscall.SIGINT)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d after SIGINT at the prompt, want 0", code)
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil || tio.Lflag&unix.ECHO == 0 {
		t.Errorf("the terminal's echo was not restored (%v)", err)
	}
	if n := len(h.stdinRecords("signer")); n != 0 {
		t.Errorf("a service started after the prompt was cancelled")
	}
	if _, err := os.Lstat(filepath.Join(h.root(), "lavavisor.sock")); err == nil {
		t.Error("control socket left")
	}
}
