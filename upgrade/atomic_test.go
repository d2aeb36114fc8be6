package upgrade

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func noTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("temporary entry left: %s", e.Name())
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "two" {
		t.Fatalf("content %q, %v", b, err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	noTemp(t, dir)
}

func TestWriteFileAtomicFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	// A directory in the way: the rename fails after the temp file was written.
	target := filepath.Join(dir, "x")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	err := WriteFileAtomic(target, []byte("data"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "write "+target) {
		t.Fatalf("err = %v", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))

	err = WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("data"), 0o644)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))
}

func TestSwapSymlink(t *testing.T) {
	home := t.TempDir()
	for _, v := range []string{"6.2.5", "6.2.6"} {
		writeRelease(t, filepath.Join(home, "upgrades"), v, []byte("bin "+v), false)
	}
	current := filepath.Join(home, "current")

	// Over nothing, relative: resolves from the link's folder.
	if err := SwapSymlink(current, "upgrades/v6.2.5"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(current, "lavap"))
	if err != nil || string(b) != "bin 6.2.5" {
		t.Fatalf("current/lavap = %q, %v", b, err)
	}
	// Over a symlink.
	if err := SwapSymlink(current, "upgrades/v6.2.6"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(current); got != "upgrades/v6.2.6" {
		t.Fatalf("current -> %q", got)
	}
	// Same target again: a no-op.
	if err := SwapSymlink(current, "upgrades/v6.2.6"); err != nil {
		t.Fatal(err)
	}
	noTemp(t, home)
}

func TestSwapSymlinkKeepsRegularFile(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "lavap")
	target := "/somewhere/upgrades/v6.2.5/lavap"
	if err := os.WriteFile(link, []byte("operator's own lavap"), 0o755); err != nil {
		t.Fatal(err)
	}
	bak, err := SwapSymlinkBackup(link, target)
	if err != nil {
		t.Fatal(err)
	}
	if bak != link+".bak" {
		t.Errorf("backup %q", bak)
	}
	if b, err := os.ReadFile(link + ".bak"); err != nil || string(b) != "operator's own lavap" {
		t.Fatalf("lavap.bak = %q, %v", b, err)
	}
	if got, _ := os.Readlink(link); got != target {
		t.Fatalf("lavap -> %q", got)
	}

	// Another regular file later: the first backup is not overwritten.
	os.Remove(link)
	if err := os.WriteFile(link, []byte("second"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := SwapSymlink(link, target); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(link + ".bak"); string(b) != "operator's own lavap" {
		t.Errorf("lavap.bak overwritten: %q", b)
	}
	if b, _ := os.ReadFile(link + ".bak.1"); string(b) != "second" {
		t.Errorf("lavap.bak.1 = %q", b)
	}
	noTemp(t, dir)
}

func TestSwapSymlinkRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "lavap")
	if err := os.MkdirAll(filepath.Join(link, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	err := SwapSymlink(link, "/x")
	if err == nil || !strings.Contains(err.Error(), "a directory is in the way") {
		t.Fatalf("err = %v", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))

	err = SwapSymlink(filepath.Join(dir, "missing", "lavap"), "/x")
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))
}
