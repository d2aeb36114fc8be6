package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// strictHome is a sound home with a linked release and one command service.
func strictHome(t *testing.T) *testHome {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	h.config("node: file://" + h.dir + "/versions.yml\nlink: none\nservices:\n" + h.service("p1", ""))
	return h
}

// As root, LavaVisor refuses a home whose parts another user owns or anyone
// may write, naming the path and the fix; nothing runs and nothing changes.
func TestRootRefusesUntrustedHome(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name  string
		spoil func(h *testHome) string // returns the path to be named
		want  string
	}{
		{"home owned by another user", func(h *testHome) string {
			os.Chown(h.root(), nobody, nobody)
			return h.root()
		}, "owned by uid 65534"},
		{"config.yml owned by another user", func(h *testHome) string {
			p := filepath.Join(h.root(), "config.yml")
			os.Chown(p, nobody, nobody)
			return p
		}, "`chown root: "},
		{"upgrades owned by another user", func(h *testHome) string {
			p := filepath.Join(h.root(), "upgrades")
			os.Chown(p, nobody, nobody)
			return p
		}, "owned by uid 65534"},
		{"config.yml writable by others", func(h *testHome) string {
			p := filepath.Join(h.root(), "config.yml")
			os.Chmod(p, 0o666)
			return p
		}, "`chmod go-w "},
		{"home writable by group", func(h *testHome) string {
			os.Chmod(h.root(), 0o775)
			return h.root()
		}, "writable by group or others (mode 0775)"},
		{"upgrades a symlink owned by another user", func(h *testHome) string {
			p := filepath.Join(h.root(), "upgrades")
			real := filepath.Join(h.dir, "real-upgrades")
			os.Rename(p, real)
			os.Symlink(real, p)
			os.Lchown(p, nobody, nobody)
			return p
		}, "is a symlink owned by uid 65534"},
		{".lavavisor a symlink owned by another user", func(h *testHome) string {
			real := filepath.Join(h.dir, "real-home")
			os.Rename(h.root(), real)
			os.Symlink(real, h.root())
			os.Lchown(h.root(), nobody, nobody)
			return h.root()
		}, "is a symlink owned by uid 65534"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := strictHome(t)
			path := tc.spoil(h)
			before := snapshotTree(t, h.dir)
			for _, cmd := range []string{"start", "init", "check"} {
				code, out := runLavavisor(t, "--directory", h.dir, cmd)
				if code != 1 || !strings.Contains(out, path) || !strings.Contains(out, tc.want) {
					t.Errorf("%s: code %d, want 1 naming %s and %q\n%s", cmd, code, path, tc.want, out)
				}
			}
			if n := h.count("p1", "start"); n != 0 {
				t.Errorf("the service ran %d times", n)
			}
			assertUnchanged(t, before, snapshotTree(t, h.dir))
		})
	}
}

// Owned by root and not writable by others, or a symlink of root's: accepted.
func TestRootAcceptsItsOwnSymlinkedReleases(t *testing.T) {
	needRoot(t)
	h := strictHome(t)
	p := filepath.Join(h.root(), "upgrades")
	real := filepath.Join(h.dir, "real-upgrades")
	os.Rename(p, real)
	os.Symlink(real, p)
	if code, out := runLavavisor(t, "--directory", h.dir, "check"); code != 0 {
		t.Errorf("code %d\n%s", code, out)
	}
}

// A release folder that is a symlink is not a release: it is never adopted
// (no manifest written through it), never named after its target, and
// `current` names the release by the folder it points at, one level.
func TestSymlinkedReleaseFolderIsNotARelease(t *testing.T) {
	h := strictHome(t)
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	os.MkdirAll(elsewhere, 0o755)
	b, _ := os.ReadFile(filepath.Join(fakeBuilds, "6.2.6", "lavap"))
	os.WriteFile(filepath.Join(elsewhere, "lavap"), b, 0o755)
	os.Symlink(elsewhere, filepath.Join(h.root(), "upgrades", "v6.2.6"))
	h.versions("6.2.6", "6.2.6")
	before := snapshotTree(t, elsewhere)
	code, out := runLavavisor(t, "--directory", h.dir, "init")
	if code != 1 || !strings.Contains(out, "is a symlink") {
		t.Errorf("init: code %d, want 1 saying the release folder is a symlink\n%s", code, out)
	}
	if h.currentTag() != "v6.2.5" {
		t.Errorf("current moved to %s", h.currentTag())
	}
	assertUnchanged(t, before, snapshotTree(t, elsewhere))

	// `current` pointing at the symlinked folder: not a release, no service
	// starts on it and no release is named "elsewhere".
	os.Remove(filepath.Join(h.root(), "current"))
	os.Symlink("upgrades/v6.2.6", filepath.Join(h.root(), "current"))
	code, out = runLavavisor(t, "--directory", h.dir, "start")
	if code != 1 || !strings.Contains(out, "is a symlink, not a release") || strings.Contains(out, "elsewhere ") {
		t.Errorf("start: code %d\n%s", code, out)
	}
	if n := h.count("p1", "start"); n != 0 {
		t.Errorf("a service started on the symlinked release")
	}
	assertUnchanged(t, before, snapshotTree(t, elsewhere))
}

// The release is the folder `current` names, one level: a release folder
// reached through a symlinked releases folder keeps its own tag.
func TestCurrentIsReadOneLevel(t *testing.T) {
	h := strictHome(t)
	shared := filepath.Join(t.TempDir(), "v9.9.9") // a name that is a tag
	os.Rename(filepath.Join(h.root(), "upgrades", "v6.2.5"), filepath.Join(shared))
	// upgrades/v6.2.5 is gone; current -> a link named v6.2.5 in a folder that
	// is itself a real folder, pointing at another tag: refused.
	os.Symlink(shared, filepath.Join(h.root(), "upgrades", "v6.2.5"))
	code, out := runLavavisor(t, "--directory", h.dir, "check")
	if strings.Contains(out, "9.9.9") {
		t.Errorf("the release was named after the link's target: code %d\n%s", code, out)
	}
}
