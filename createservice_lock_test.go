package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lavavisor/lavavisor/config"
)

// Two create-service at once both keep their service: the read-modify-write
// of config.yml is serialised by .lavavisor/config.lock.
func TestCreateServiceConcurrentPairsKeepBoth(t *testing.T) {
	src := filepath.Join(t.TempDir(), "provider.yml")
	csWriteFile(t, src, csReadFile(t, "testdata/createservice/provider.yml"), 0o644)
	for pair := range 30 {
		h := newTestHome(t)
		h.config("node: tcp://127.0.0.1:26657\nservices: []\n")
		var procs []*proc
		for _, name := range []string{"a", "b"} {
			procs = append(procs, h.start("create-service", "provider", src, "--from", "op", "--geolocation", "1", "--name", name))
		}
		for _, p := range procs {
			if code := p.wait(); code != 0 {
				t.Fatalf("pair %d: exit %d\n%s", pair, code, p.out.String())
			}
		}
		cfg, err := config.Load(filepath.Join(h.root(), "config.yml"), config.Overrides{}, config.Options{AllowNoServices: true})
		if err != nil {
			t.Fatalf("pair %d: %v", pair, err)
		}
		for _, name := range []string{"a", "b"} {
			if _, ok := cfg.Service(name); !ok {
				b, _ := os.ReadFile(filepath.Join(h.root(), "config.yml"))
				t.Fatalf("pair %d: service %s lost; config.yml:\n%s", pair, name, b)
			}
		}
	}
}

// A symlinked config.yml stays a link; the file it points at gets the
// service, replaced atomically in its own folder.
func TestCreateServiceWritesThroughSymlinkedConfig(t *testing.T) {
	h := newTestHome(t)
	os.MkdirAll(h.root(), 0o755)
	shared := filepath.Join(h.dir, "shared")
	os.MkdirAll(shared, 0o755)
	target := filepath.Join(shared, "lavavisor.yml")
	os.WriteFile(target, []byte("node: tcp://127.0.0.1:26657\nservices: []\n"), 0o640)
	link := filepath.Join(h.root(), "config.yml")
	if err := os.Symlink("../shared/lavavisor.yml", link); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(h.dir, "provider.yml")
	csWriteFile(t, src, csReadFile(t, "testdata/createservice/provider.yml"), 0o644)
	if code, out := runLavavisor(t, "--directory", h.dir, "create-service", "provider", src, "--from", "op", "--geolocation", "1"); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if l, err := os.Readlink(link); err != nil || l != "../shared/lavavisor.yml" {
		t.Fatalf("config.yml is no longer the link: %q, %v", l, err)
	}
	b, _ := os.ReadFile(target)
	if !strings.Contains(string(b), "name: provider") {
		t.Errorf("target lacks the service:\n%s", b)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("target mode %v, want 0640 kept", fi.Mode().Perm())
	}
	for _, dir := range []string{shared, h.root()} {
		leftovers, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
		if len(leftovers) > 0 {
			t.Errorf("temporary files left: %v", leftovers)
		}
	}

	// A dangling link is an error naming it; nothing is made.
	os.Remove(target)
	before := snapshotTree(t, h.dir)
	code, out := runLavavisor(t, "--directory", h.dir, "create-service", "provider", src, "--from", "op", "--geolocation", "1", "--name", "other")
	if code != 1 || !strings.Contains(out, fmt.Sprintf("config file %s is a symlink to ../shared/lavavisor.yml", link)) {
		t.Errorf("dangling link: exit %d\n%s", code, out)
	}
	after := snapshotTree(t, h.dir)
	lock := filepath.Join(h.root(), "config.lock") // its holder's pid, written in place
	delete(before, lock)
	delete(after, lock)
	assertUnchanged(t, before, after)
}
