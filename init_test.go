package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// initHome is an empty --directory with a versions file wanting 6.2.6, and a
// HOME of its own so that `link: auto` lands in <tmp>/go/bin/lavap.
func initHome(t *testing.T) *testHome {
	h := newTestHome(t)
	h.versions("6.2.6", "6.2.6")
	t.Setenv("HOME", filepath.Join(h.dir, "userhome"))
	t.Setenv("PATH", "/usr/bin:/bin")
	return h
}

func (h *testHome) nodeFlag() string { return "--node=file://" + filepath.Join(h.dir, "versions.yml") }

func TestInitWithoutReleaseOrDownloadExits1(t *testing.T) {
	h := initHome(t)
	code, out := runLavavisor(t, "--directory", h.dir, h.nodeFlag(), "init")
	if code != 1 || !strings.Contains(out, "6.2.6") || !strings.Contains(out, filepath.Join(h.root(), "upgrades")) {
		t.Fatalf("code %d, output:\n%s", code, out)
	}
	// Step 1 still happened: home and a sample config; nothing linked.
	if _, err := os.Stat(filepath.Join(h.root(), "config.yml")); err != nil {
		t.Error("no sample config.yml")
	}
	if _, err := os.Lstat(filepath.Join(h.root(), "current")); err == nil {
		t.Error("current linked without a release")
	}
}

func TestInitDownloadsVerifiesAndLinks(t *testing.T) {
	h := initHome(t)
	rs := newReleaseServer(t)
	code, out := runLavavisor(t, "--directory", h.dir, h.nodeFlag(),
		"--download-url", rs.URL+"/v{version}/lavap-v{version}-{os}-{arch}", "--checksums-url", rs.URL+"/v{version}/sha256sum.txt",
		"init", "--auto-download")
	if code != 0 {
		t.Fatalf("code %d, output:\n%s", code, out)
	}
	if h.currentTag() != "v6.2.6" {
		t.Errorf("current = %q", h.currentTag())
	}
	if rel, _ := os.Readlink(filepath.Join(h.root(), "current")); filepath.IsAbs(rel) {
		t.Errorf("current is not relative: %s", rel)
	}
	var m struct{ Version, SHA256, Source, ReportedVersion string }
	b, _ := os.ReadFile(filepath.Join(h.root(), "upgrades", "v6.2.6", "manifest.json"))
	if err := json.Unmarshal(b, &m); err != nil || m.Version != "6.2.6" || m.Source != "url" || len(m.SHA256) != 64 {
		t.Errorf("manifest %s: %v", b, err)
	}
	sys := filepath.Join(h.dir, "userhome", "go", "bin", "lavap")
	if target, err := os.Readlink(sys); err != nil || target != filepath.Join(h.root(), "upgrades", "v6.2.6", "lavap") {
		t.Errorf("system link %s -> %s, %v", sys, target, err)
	}
	// A second init changes nothing and downloads nothing.
	config, _ := os.ReadFile(filepath.Join(h.root(), "config.yml"))
	code, out = runLavavisor(t, "--directory", h.dir, h.nodeFlag(), "init")
	if code != 0 || rs.downloads("6.2.6") != 1 {
		t.Errorf("second init: code %d, downloads %d\n%s", code, rs.downloads("6.2.6"), out)
	}
	if again, _ := os.ReadFile(filepath.Join(h.root(), "config.yml")); string(again) != string(config) {
		t.Error("init rewrote config.yml")
	}
}

func TestInitKeepsRegularFileAtSystemPath(t *testing.T) {
	h := initHome(t)
	h.place("6.2.6")
	bin := filepath.Join(h.dir, "userhome", "go", "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "lavap"), []byte("old lavap"), 0o755)
	t.Setenv("PATH", bin+":/usr/bin:/bin")
	if code, out := runLavavisor(t, "--directory", h.dir, h.nodeFlag(), "init"); code != 0 {
		t.Fatalf("code %d\n%s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(bin, "lavap.bak")); err != nil || string(b) != "old lavap" {
		t.Errorf("the old binary was not kept as lavap.bak: %q %v", b, err)
	}
}

func TestInitAutoStartRuns(t *testing.T) {
	h := initHome(t)
	h.place("6.2.6")
	h.config(fmt.Sprintf("node: file://%s/versions.yml\nlink: none\nservices:\n", h.dir) + h.service("p1", ""))
	p := h.start("init", "--auto-start")
	p.waitFor("p1 started on 6.2.6", func() bool { return h.lastStartVersion("p1") == "6.2.6" })
}

// snapshotTree records every path with its mode, size, mtime and content.
func snapshotTree(t *testing.T, root string) map[string]string {
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, _ := os.Lstat(p)
		s := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			s += " " + string(b)
		} else if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			s += " -> " + l
		}
		out[p] = s
		return nil
	})
	return out
}

func TestCheckIsADryRun(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.place("6.2.6")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	h.config(fmt.Sprintf("node: file://%s/versions.yml\nlink: none\nservices:\n", h.dir) + h.service("p1", "") + "  - name: tool\n    command: /bin/true\n")
	before := snapshotTree(t, h.dir)
	code, out := runLavavisor(t, "--directory", h.dir, "check")
	if code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("nothing due: code %d\n%s", code, out)
	}
	assertUnchanged(t, before, snapshotTree(t, h.dir))
	h.versions("6.2.5", "6.2.6")
	before = snapshotTree(t, h.dir)
	code, out = runLavavisor(t, "--directory", h.dir, "check", "--json")
	if code != 3 {
		t.Fatalf("due: code %d\n%s", code, out)
	}
	var r checkReport
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Running != "6.2.5" || r.Wanted != "6.2.6" || r.Source != "local" || strings.Join(r.Restart, ",") != "p1" || r.Chain.ProviderTarget != "6.2.6" {
		t.Errorf("report %+v", r)
	}
	assertUnchanged(t, before, snapshotTree(t, h.dir))
	os.Remove(filepath.Join(h.dir, "versions.yml"))
	if code, out := runLavavisor(t, "--directory", h.dir, "check"); code != 1 {
		t.Errorf("unreadable chain: code %d\n%s", code, out)
	}
}

// Two instances with their own homes and one shared releases folder, started
// at once, download once and both succeed.
func TestSharedReleasesDirDownloadsOnce(t *testing.T) {
	rs := newReleaseServer(t)
	shared := t.TempDir()
	a, b := initHome(t), newTestHome(t)
	b.versions("6.2.6", "6.2.6")
	var procs []*proc
	for _, h := range []*testHome{a, b} {
		procs = append(procs, h.start(h.nodeFlag(), "--releases-dir", shared,
			"--download-url", rs.URL+"/v{version}/lavap-v{version}-{os}-{arch}", "--checksums-url", rs.URL+"/v{version}/sha256sum.txt",
			"init", "--auto-download"))
	}
	for i, p := range procs {
		if code := p.wait(); code != 0 {
			t.Errorf("instance %d: exit %d\n%s", i, code, p.out.String())
		}
	}
	if n := rs.downloads("6.2.6"); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}
	for _, h := range []*testHome{a, b} {
		if target, _ := filepath.EvalSymlinks(filepath.Join(h.root(), "current")); target != filepath.Join(shared, "v6.2.6") {
			t.Errorf("current -> %s", target)
		}
	}
}

func TestInitLinkNoneLinksNoSystemPath(t *testing.T) {
	h := initHome(t)
	h.place("6.2.6")
	h.config(fmt.Sprintf("node: file://%s/versions.yml\nlink: none\nservices: []\n", h.dir))
	if code, out := runLavavisor(t, "--directory", h.dir, "init"); code != 0 {
		t.Fatalf("code %d\n%s", code, out)
	}
	if h.currentTag() != "v6.2.6" {
		t.Errorf("current %q", h.currentTag())
	}
	if _, err := os.Lstat(filepath.Join(h.dir, "userhome", "go", "bin", "lavap")); err == nil {
		t.Error("a system-path link was made with link: none")
	}
}

// init fsyncs the sample config before linking it into place, and the home
// folder after (SPEC §2), as strace sees it.
func TestInitSyncsSampleConfig(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("needs strace")
	}
	h := initHome(t)
	trace := filepath.Join(t.TempDir(), "trace")
	p := startProc(t, strace, "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,link,linkat,rename,renameat,renameat2", "-o", trace,
		lavavisorBin, "--directory", h.dir, h.nodeFlag(), "init")
	p.wait()
	if !strings.Contains(p.out.String(), "created a sample config.yml") {
		t.Fatalf("no sample config made:\n%s", p.out.String())
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Skipf("strace left no trace (ptrace not allowed?): %v\n%s", err, p.out.String())
	}
	step := 0
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case step == 0 && strings.Contains(l, "fsync(") && strings.Contains(l, ".tmp-config.yml"):
			step = 1
		case step == 1 && strings.Contains(l, "link") && strings.Contains(l, "/config.yml\""):
			step = 2
		case step == 2 && strings.Contains(l, "fsync(") && strings.Contains(l, "<"+h.root()+">"):
			step = 3
		}
	}
	if step != 3 {
		t.Errorf("want fsync of the temporary config, link to config.yml, fsync of %s; got to step %d of the trace:\n%s", h.root(), step, b)
	}
}

// check and status run no release binary, even hand-placed ones without a
// manifest, and write nothing in the home, even with a corrupt state.json.
func TestCheckAndStatusRunNoReleaseAndWriteNothing(t *testing.T) {
	h := newTestHome(t)
	runs := filepath.Join(t.TempDir(), "runs") // outside the home
	for _, v := range []string{"6.2.5", "6.2.6"} {
		dir := filepath.Join(h.root(), "upgrades", "v"+v)
		os.MkdirAll(dir, 0o755)
		script := fmt.Sprintf("#!/bin/sh\necho \"v%s $*\" >> %s\necho %s\n", v, runs, v)
		if err := os.WriteFile(filepath.Join(dir, "lavap"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h.link("6.2.5")
	h.config(fmt.Sprintf("node: file://%s/versions.yml\nlink: none\nservices:\n", h.dir) + h.service("p1", ""))
	os.WriteFile(filepath.Join(h.root(), "state.json"), []byte("{not json"), 0o600)
	for _, want := range []struct {
		target string
		code   int
	}{{"6.2.5", 0}, {"6.2.6", 3}} {
		h.versions("6.2.5", want.target)
		before := snapshotTree(t, h.dir)
		for _, args := range [][]string{{"check"}, {"check", "--json"}, {"status"}, {"status", "--json"}} {
			code, out := runLavavisor(t, append([]string{"--directory", h.dir}, args...)...)
			wantCode := want.code
			if args[0] == "status" {
				wantCode = 1 // nothing runs
			}
			if code != wantCode {
				t.Errorf("%v (target %s): code %d, want %d\n%s", args, want.target, code, wantCode, out)
			}
		}
		assertUnchanged(t, before, snapshotTree(t, h.dir))
	}
	if b, err := os.ReadFile(runs); err == nil {
		t.Errorf("a release binary was run:\n%s", b)
	}
}
