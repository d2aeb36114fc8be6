package main

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// spamLine is line i of a fake started with FAKE_SPAM, as it wrote it.
func spamLine(i int) string { return fmt.Sprintf("%010d %088s", i, "x") }

// logFileLines reads name's log files in dir, the rotated ones (decompressed)
// oldest first, then the current one, and returns their lines.
func logFileLines(t *testing.T, dir, name string) (lines []string, rotated int) {
	t.Helper()
	backups, _ := filepath.Glob(filepath.Join(dir, name+"-*.log*"))
	slices.Sort(backups) // the names hold UTC times that sort as text
	for _, p := range append(backups, filepath.Join(dir, name+".log")) {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = f
		if strings.HasSuffix(p, ".gz") {
			gz, err := gzip.NewReader(f)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			r = gz
			rotated++
		}
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if err := sc.Err(); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		f.Close()
	}
	return lines, rotated
}

// Rotation compresses the rotated files and loses no line: numbered lines
// are found once each, in order, raw (no LavaVisor prefix), across every file
// kept.
func TestLogFilesRotateWithoutLosingLines(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	logs := filepath.Join(h.dir, "logs")
	const n = 40000 // 4 MB of 100-byte lines: 3 rotations at 1MiB
	h.config(fmt.Sprintf("node: file:///x.yml\nstop-timeout: 5s\nlogs-dir: %s\nlog-max-size: 1MiB\nlog-max-files: 10\nservices:\n", logs) +
		h.service("spam", "", fmt.Sprintf("FAKE_SPAM=%d", n)))
	p := h.start("start")
	p.waitFor("the last line in the log file", func() bool {
		b, _ := os.ReadFile(filepath.Join(logs, "spam.log"))
		return strings.Contains(string(b), spamLine(n-1)+"\n")
	})
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	lines, rotated := logFileLines(t, logs, "spam")
	if rotated < 3 {
		entries, _ := os.ReadDir(logs)
		t.Errorf("%d compressed rotated files, want at least 3; folder: %v", rotated, entries)
	}
	next := 0
	for _, l := range lines {
		if next < n && l == spamLine(next) {
			next++
			continue
		}
		if strings.Contains(l, " x") && strings.HasSuffix(l, "xxx") {
			t.Fatalf("line %q out of sequence: want line %d", l, next)
		}
	}
	if next != n {
		t.Fatalf("found lines 0 to %d in order, want all %d", next-1, n)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "INF fake lavap 6.2.5 started") }) {
		t.Errorf("stderr line of the fake missing, or not raw; first lines: %q", lines[:min(3, len(lines))])
	}
	if strings.Contains(p.out.String(), "dropped") {
		t.Errorf("lines dropped:\n%s", p.out.String())
	}
}

// A log folder that fills up, or is removed and replaced by a file, costs
// lines, never the service: same pid, LavaVisor up, the drops counted and
// reported once the file is written again.
func TestLogFilesFailingDiskKeepsServiceRunning(t *testing.T) {
	for _, fault := range []string{"full", "removed"} {
		t.Run(fault, func(t *testing.T) {
			h := newTestHome(t)
			h.place("6.2.5")
			h.link("6.2.5")
			logs := filepath.Join(h.dir, "logs")
			if err := os.Mkdir(logs, 0o755); err != nil {
				t.Fatal(err)
			}
			var fix func()
			switch fault {
			case "full":
				out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", logs).CombinedOutput()
				if err != nil {
					// Fall back to the other fault, and say so.
					t.Logf("mount tmpfs refused (%v: %s): the folder is removed instead", err, out)
					fault = "removed"
					break
				}
				t.Logf("ran: a 1 MiB tmpfs filled up")
				t.Cleanup(func() { exec.Command("umount", logs).Run() })
				fix = func() {
					if out, err := exec.Command("mount", "-o", "remount,size=64m", logs).CombinedOutput(); err != nil {
						t.Fatalf("remount: %v: %s", err, out)
					}
				}
			}
			h.config(fmt.Sprintf("node: file:///x.yml\nstop-timeout: 5s\nlogs-dir: %s\nlog-max-size: 10MiB\nservices:\n", logs) +
				h.service("p", "", "FAKE_SPAM=20000", "FAKE_TICK=20ms"))
			p := h.start("start")
			p.waitFor("started", func() bool { return h.count("p", "start") == 1 })
			pid := h.pids("p")[0]
			if fault == "removed" {
				t.Logf("ran: the folder removed and replaced by a file")
				p.waitFor("lines in the log file", func() bool {
					fi, err := os.Stat(filepath.Join(logs, "p.log"))
					return err == nil && fi.Size() > 0
				})
				if err := os.RemoveAll(logs); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(logs, []byte("in the way\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				fix = func() {
					if err := os.Remove(logs); err != nil {
						t.Fatal(err)
					}
				}
			}
			p.waitLog("cannot write the log file")
			// Still serving while the file fails: ticks go on.
			before := strings.Count(p.out.String(), "serving")
			p.waitFor("more lines on the terminal", func() bool { return strings.Count(p.out.String(), "serving") > before+3 })
			fix()
			p.waitLog("the log file is written again")
			out := p.out.String()
			i := strings.Index(out, "the log file is written again")
			line := out[strings.LastIndexByte(out[:i], '\n')+1:]
			line = line[:strings.IndexByte(line, '\n')]
			var dropped int
			if _, err := fmt.Sscanf(line[strings.Index(line, "again; ")+len("again; "):], "%d lines were dropped", &dropped); err != nil || dropped == 0 {
				t.Errorf("drop report %q: want a count above 0", line)
			}
			if !alive(pid) || h.count("p", "start") != 1 {
				t.Errorf("the service was restarted or died: pid %d alive %v, events %q", pid, alive(pid), h.events("p"))
			}
			// The file is written again.
			p.waitFor("new lines in the log file", func() bool {
				b, _ := os.ReadFile(filepath.Join(logs, "p.log"))
				return strings.Count(string(b), "serving") >= 3
			})
			p.signal(syscall.SIGTERM)
			if code := p.wait(); code != 0 {
				t.Fatalf("exit %d", code)
			}
		})
	}
}

// Run as root, a logs-dir that another user owns, that others may write, or
// that is a link, is refused with the reason and the fix; nothing starts and
// nothing is written in it.
func TestLogsDirNotTrustedIsRefusedAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the ownership rules apply to root only; run the tests as root")
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T, dir string) string // returns logs-dir
		want string
	}{
		{"other owner", func(t *testing.T, dir string) string {
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "is owned by uid 65534, and LavaVisor runs as root: that user could link a log file to any file"},
		{"writable by others", func(t *testing.T, dir string) string {
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			return dir
		}, "is writable by group or others (mode 0777)"},
		{"symlink", func(t *testing.T, dir string) string {
			link := dir + "-link"
			if err := os.Symlink(dir, link); err != nil {
				t.Fatal(err)
			}
			return link
		}, "is a symlink: LavaVisor does not write log files through links"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHome(t)
			h.place("6.2.5")
			h.link("6.2.5")
			dir := filepath.Join(h.dir, "logs")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			logs := tc.make(t, dir)
			h.config(fmt.Sprintf("node: file:///x.yml\nlogs-dir: %s\nservices:\n", logs) + h.service("p", ""))
			code, out := runLavavisor(t, "--directory", h.dir, "start")
			if code != 1 || !strings.Contains(out, "logs-dir: "+logs+" "+tc.want) && !strings.Contains(out, "logs-dir "+logs+" "+tc.want) {
				t.Errorf("exit %d, want 1 with %q:\n%s", code, tc.want, out)
			}
			if h.count("p", "start") != 0 {
				t.Error("the service started")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("written in the folder: %v", entries)
			}
		})
	}
}

// A reload that sets logs-dir starts writing there; one that changes it moves
// the files to the new folder.
func TestReloadSetsLogsDir(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	svc := h.service("p", "", "FAKE_TICK=10ms")
	h.config("node: file:///x.yml\nstop-timeout: 5s\nservices:\n" + svc)
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p", "start") == 1 })
	pid := h.pids("p")[0]
	serving := func(dir string) func() bool {
		return func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, "p.log"))
			return strings.Count(string(b), "INF fake lavap 6.2.5 serving\n") >= 3
		}
	}
	for i, dir := range []string{filepath.Join(h.dir, "logs1"), filepath.Join(h.dir, "logs2")} {
		h.config(fmt.Sprintf("node: file:///x.yml\nstop-timeout: 5s\nlogs-dir: %s\nservices:\n", dir) + svc)
		if code, out := runLavavisor(t, "--directory", h.dir, "reload"); code != 0 {
			t.Fatalf("reload %d: exit %d: %s", i, code, out)
		}
		p.waitFor("lines in "+dir, serving(dir))
	}
	// The old file is closed: no descriptor of LavaVisor's names it, and
	// it no longer grows while the new one does.
	old := filepath.Join(h.dir, "logs1", "p.log")
	p.waitFor("logs1/p.log closed", func() bool { return !openBy(p.cmd.Process.Pid, old) })
	b1, _ := os.ReadFile(old)
	b2, _ := os.ReadFile(filepath.Join(h.dir, "logs2", "p.log"))
	p.waitFor("more lines in logs2", func() bool {
		b, _ := os.ReadFile(filepath.Join(h.dir, "logs2", "p.log"))
		return strings.Count(string(b), "serving") >= strings.Count(string(b2), "serving")+3
	})
	if b, _ := os.ReadFile(old); len(b) != len(b1) {
		t.Errorf("logs1/p.log still written after the reload")
	}
	if h.count("p", "start") != 1 || !alive(pid) {
		t.Errorf("the service was restarted by the reload: %q", h.events("p"))
	}
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// pod takes --logs-dir and LAVAVISOR_LOG_MAX_SIZE/LAVAVISOR_LOG_MAX_FILES;
// a bad value names its flag.
func TestPodLogFileFlags(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	logs := filepath.Join(h.dir, "logs")
	cmd := exec.Command(lavavisorBin, "--directory", h.dir, "--node", "file:///x.yml", "pod", "--name", "one", "--logs-dir", logs, "--", "lavap", "rpcprovider", "p.yml")
	cmd.Env = append(os.Environ(), "NO_COLOR=1", "LAVAVISOR_LOG_MAX_SIZE=2MiB", "LAVAVISOR_LOG_MAX_FILES=2", "FAKE_TICK=10ms")
	p := launch(t, cmd)
	p.waitFor("lines in the log file", func() bool {
		b, _ := os.ReadFile(filepath.Join(logs, "one.log"))
		return strings.Contains(string(b), "INF fake lavap 6.2.5 serving\n")
	})
	p.signal(syscall.SIGTERM)
	p.wait()

	cmd = exec.Command(lavavisorBin, "--directory", h.dir, "--node", "file:///x.yml", "pod", "--log-max-size", "10KiB", "--", "lavap", "rpcprovider")
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	p = launch(t, cmd)
	if code := p.wait(); code != 1 || !strings.Contains(p.out.String(), "--log-max-size: 10KiB: must be at least 1MiB") {
		t.Errorf("exit %d:\n%s", code, p.out.String())
	}
}

// openBy tells whether process pid has path open.
func openBy(pid int, path string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}
