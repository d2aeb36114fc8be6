package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runInDir runs lavavisor to its end from the folder wd, with env added.
func runInDir(t *testing.T, wd string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(lavavisorBin, args...)
	cmd.Dir = wd
	cmd.Env = append(append(os.Environ(), "NO_COLOR=1"), env...)
	p := launch(t, cmd)
	return p.wait(), p.out.String()
}

// tildeHome is a fake $HOME with a placed release and a versions file, and a
// separate working folder, so that a literal ./~ would show.
func tildeHome(t *testing.T) (h *testHome, wd string) {
	h = newTestHome(t)
	h.versions("6.2.6", "6.2.6")
	h.place("6.2.6")
	t.Setenv("HOME", h.dir)
	t.Setenv("PATH", "/usr/bin:/bin")
	wd = t.TempDir()
	return h, wd
}

func TestTildeMeansHOME(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  []string
	}{
		{"default", nil, nil},
		{"flag ~", []string{"--directory", "~"}, nil},
		{"flag =~", []string{"--directory=~"}, nil},
		{"flag ~/", []string{"--directory", "~/"}, nil},
		{"env ~", nil, []string{"LAVAVISOR_DIRECTORY=~"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, wd := tildeHome(t)
			args := append(append([]string{}, tc.args...), "--node=file://"+filepath.Join(h.dir, "versions.yml"), "init")
			code, out := runInDir(t, wd, tc.env, args...)
			if code != 0 {
				t.Fatalf("init: code %d\n%s", code, out)
			}
			if h.currentTag() != "v6.2.6" {
				t.Errorf("current in $HOME/.lavavisor = %q", h.currentTag())
			}
			if _, err := os.Lstat(filepath.Join(wd, "~")); err == nil {
				t.Errorf("a folder literally named ~ was made in %s", wd)
			}
		})
	}
}

func TestTildeSubfolder(t *testing.T) {
	h, wd := tildeHome(t)
	os.MkdirAll(filepath.Join(h.dir, "sub", ".lavavisor", "upgrades"), 0o755)
	os.Rename(filepath.Join(h.root(), "upgrades", "v6.2.6"), filepath.Join(h.dir, "sub", ".lavavisor", "upgrades", "v6.2.6"))
	for _, env := range [][]string{nil, {"LAVAVISOR_DIRECTORY=~/sub"}} {
		args := []string{"--node=file://" + filepath.Join(h.dir, "versions.yml"), "init"}
		if env == nil {
			args = append([]string{"--directory", "~/sub"}, args...)
		}
		if code, out := runInDir(t, wd, env, args...); code != 0 {
			t.Fatalf("init %v: code %d\n%s", env, code, out)
		}
		if target, err := os.Readlink(filepath.Join(h.dir, "sub", ".lavavisor", "current")); err != nil || target != "upgrades/v6.2.6" {
			t.Errorf("current -> %q, %v", target, err)
		}
	}
}

// config.yml paths: ~ in dir, command and releases-dir mean $HOME.
func TestTildeInConfigPaths(t *testing.T) {
	h, wd := tildeHome(t)
	os.MkdirAll(filepath.Join(h.dir, "work"), 0o755)
	os.MkdirAll(filepath.Join(h.dir, "rel"), 0o755)
	os.Rename(filepath.Join(h.root(), "upgrades", "v6.2.6"), filepath.Join(h.dir, "rel", "v6.2.6"))
	script := filepath.Join(h.dir, "tool.sh")
	os.WriteFile(script, []byte("#!/bin/sh\npwd > \"$HOME/tool.pwd\"\n"), 0o755)
	h.config(fmt.Sprintf("node: file://%s/versions.yml\nlink: none\nreleases-dir: ~/rel\nrestart: never\nservices:\n  - name: tool\n    command: ~/tool.sh\n    dir: ~/work\n", h.dir))
	if code, out := runInDir(t, wd, nil, "init"); code != 0 {
		t.Fatalf("init: code %d\n%s", code, out)
	}
	if target, _ := os.Readlink(filepath.Join(h.root(), "current")); target != "../rel/v6.2.6" {
		t.Errorf("current -> %q, want ../rel/v6.2.6", target)
	}
	if code, out := runInDir(t, wd, nil, "start"); code != 0 {
		t.Fatalf("start: code %d\n%s", code, out)
	}
	if b, err := os.ReadFile(filepath.Join(h.dir, "tool.pwd")); err != nil || strings.TrimSpace(string(b)) != filepath.Join(h.dir, "work") {
		t.Errorf("tool ran in %q (%v), want %s", b, err, filepath.Join(h.dir, "work"))
	}
	if _, err := os.Lstat(filepath.Join(wd, "~")); err == nil {
		t.Error("a folder literally named ~ was made")
	}
}

// A home left at ./~/.lavavisor by an older build is never used silently,
// nor is a new one made beside it.
func TestOldTildeHomeGetsAHint(t *testing.T) {
	h, wd := tildeHome(t)
	os.RemoveAll(h.root())
	old := filepath.Join(wd, "~", ".lavavisor")
	os.MkdirAll(old, 0o755)
	os.WriteFile(filepath.Join(old, "config.yml"), []byte("services: []\n"), 0o644)
	before, beforeWD := snapshotTree(t, h.dir), snapshotTree(t, wd)
	for _, args := range [][]string{{"init"}, {"check"}, {"start"}, {"status"}, {"--directory", "~", "check"}} {
		code, out := runInDir(t, wd, nil, append([]string{"--node=file://" + filepath.Join(h.dir, "versions.yml")}, args...)...)
		if code != 1 || !strings.Contains(out, old) || !strings.Contains(out, "mv ") || !strings.Contains(out, "older LavaVisor") {
			t.Errorf("%v: code %d, want 1 and a hint to move %s\n%s", args, code, old, out)
		}
	}
	assertUnchanged(t, before, snapshotTree(t, h.dir))
	assertUnchanged(t, beforeWD, snapshotTree(t, wd))
	// An explicit other directory is not concerned.
	if code, out := runInDir(t, wd, nil, "--directory", filepath.Join(wd, "~"), "--node=file://"+filepath.Join(h.dir, "versions.yml"), "check"); code == 1 && strings.Contains(out, "older LavaVisor") {
		t.Errorf("hint for an explicit directory:\n%s", out)
	}
	// Once $HOME/.lavavisor has a config.yml, it is the home.
	h.config("services: []\n")
	if code, out := runInDir(t, wd, nil, "--node=file://"+filepath.Join(h.dir, "versions.yml"), "check"); strings.Contains(out, "older LavaVisor") {
		t.Errorf("hint although $HOME/.lavavisor/config.yml exists: code %d\n%s", code, out)
	}
}

// assertUnchanged compares two snapshotTree results.
func assertUnchanged(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, s := range before {
		if after[p] != s {
			t.Errorf("changed: %s\n was %q\n now %q", p, s, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("added: %s", p)
		}
	}
}
