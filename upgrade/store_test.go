package upgrade

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
)

func TestHostileVersionsNeverParse(t *testing.T) {
	// Version strings a chain (or a hand) may supply; none may become a path.
	hostile := []string{"../../x", "1.2", "06.2.5", "9.9.9; rm -rf /", strings.Repeat("9", 20000), "v6.2.5", "6.2.5 ", "10001.0.0", ""}
	for _, s := range hostile {
		if v, err := chain.ParseVersion(s); err == nil {
			t.Errorf("ParseVersion(%.30q) = %v, want an error", s, v)
		}
		if v, err := chain.ParseTag("v" + s); err == nil {
			t.Errorf("ParseTag(v%.30q) = %v, want an error", s, v)
		}
	}
}

func TestListIgnoresWhatIsNotARelease(t *testing.T) {
	dir := t.TempDir()
	log, hook := testLog()
	s := &Store{Dir: dir, Log: log}
	for _, v := range []string{"6.2.5", "6.2.10", "6.2.6"} {
		writeRelease(t, dir, v, []byte("x"), false)
	}
	// Hostile or foreign names (a name cannot hold "/", so "v../x" is "v.." here).
	for _, name := range []string{"v..", "v1.2", "v06.2.5", "v9.9.9; rm -rf x", "v" + strings.Repeat("9", 200), "6.2.7", "lavap-v6.2.5", ".tmp-v6.2.8-x", "v6.2.5.rejected-20260101T000000Z"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "v6.2.7"), []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	got := s.List()
	want := []chain.Version{mustVersion(t, "6.2.5"), mustVersion(t, "6.2.6"), mustVersion(t, "6.2.10")}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if !hasLog(hook, logrus.DebugLevel, "ignoring", "name=v06.2.5") {
		t.Errorf("no debug line for v06.2.5:\n%s", logText(hook))
	}
	// Prune with keep 0 may only ever touch the real releases.
	removed, err := s.Prune(0)
	if err != nil || len(removed) != 3 {
		t.Fatalf("Prune = %v, %v", removed, err)
	}
	after := snapshot(t, dir)
	for k := range before {
		if strings.HasPrefix(k, "v6.2.5") && !strings.HasPrefix(k, "v6.2.5.rejected") || strings.HasPrefix(k, "v6.2.6") || strings.HasPrefix(k, "v6.2.10") {
			delete(before, k)
		}
	}
	assertUnchanged(t, before, after)
}

func TestListMissingFolder(t *testing.T) {
	s := &Store{Dir: filepath.Join(t.TempDir(), "missing")}
	if got := s.List(); len(got) != 0 {
		t.Fatalf("List = %v", got)
	}
}

func TestVerifyWithManifest(t *testing.T) {
	dir := t.TempDir()
	s := &Store{Dir: dir}
	bin := fakeLavap("version=6.2.5")
	writeRelease(t, dir, "6.2.5", bin, true)
	m, err := s.Verify(mustVersion(t, "6.2.5"))
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != sha(bin) || m.Version != "6.2.5" {
		t.Errorf("manifest %+v", m)
	}

	// Tampered binary: the error names both sums and nothing is rewritten.
	p := s.BinPath(mustVersion(t, "6.2.5"))
	if err := os.WriteFile(p, append(bin, 'x'), 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	_, err = s.Verify(mustVersion(t, "6.2.5"))
	if err == nil || !strings.Contains(err.Error(), sha(append(bin, 'x'))) || !strings.Contains(err.Error(), sha(bin)) {
		t.Fatalf("err = %v, want both sums", err)
	}
	assertUnchanged(t, before, snapshot(t, dir))
}

func TestVerifyRejects(t *testing.T) {
	good := fakeLavap("version=6.2.5")
	cases := []struct {
		name  string
		setup func(t *testing.T, rd string)
		want  string
	}{
		{"empty file", func(t *testing.T, rd string) {
			os.WriteFile(filepath.Join(rd, "lavap"), nil, 0o755)
		}, "is empty"},
		{"not executable", func(t *testing.T, rd string) {
			os.WriteFile(filepath.Join(rd, "lavap"), good, 0o644)
		}, "is not executable (mode 0644)"},
		{"directory", func(t *testing.T, rd string) {
			os.Mkdir(filepath.Join(rd, "lavap"), 0o755)
		}, "is a directory, not a binary"},
		{"missing", func(t *testing.T, rd string) {}, "no lavap in the folder"},
		{"symlink", func(t *testing.T, rd string) {
			os.WriteFile(filepath.Join(rd, "real"), good, 0o755)
			os.Symlink("real", filepath.Join(rd, "lavap"))
		}, "is not a regular file"},
		{"corrupt manifest", func(t *testing.T, rd string) {
			os.WriteFile(filepath.Join(rd, "lavap"), good, 0o755)
			os.WriteFile(filepath.Join(rd, "manifest.json"), []byte("{"), 0o644)
		}, "is not valid JSON"},
		{"manifest of another version", func(t *testing.T, rd string) {
			os.WriteFile(filepath.Join(rd, "lavap"), good, 0o755)
			b, _ := json.Marshal(Manifest{Version: "6.2.6", SHA256: sha(good)})
			os.WriteFile(filepath.Join(rd, "manifest.json"), b, 0o644)
		}, `names version "6.2.6"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			log, hook := testLog()
			s := &Store{Dir: dir, Log: log}
			rd := filepath.Join(dir, "v6.2.5")
			os.Mkdir(rd, 0o755)
			c.setup(t, rd)
			before := snapshot(t, dir)
			_, err := s.Verify(mustVersion(t, "6.2.5"))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "release v6.2.5") {
				t.Fatalf("Verify = %v, want %q", err, c.want)
			}
			if got := s.Usable(); len(got) != 0 {
				t.Errorf("Usable = %v", got)
			}
			if !hasLog(hook, logrus.WarnLevel, "not usable", c.want) {
				t.Errorf("no warning saying why:\n%s", logText(hook))
			}
			assertUnchanged(t, before, snapshot(t, dir))
		})
	}
}

func TestVerifyAdoptsHandPlacedRelease(t *testing.T) {
	dir := t.TempDir()
	log, hook := testLog()
	s := &Store{Dir: dir, Log: log}
	bin := fakeLavap("version=6.1.0") // real v6.2.x releases report 6.1.0
	writeRelease(t, dir, "6.2.4", bin, false)
	v := mustVersion(t, "6.2.4")

	// Read-only (check): adopted in memory, nothing written.
	ro := &Store{Dir: dir, Log: log, ReadOnly: true}
	before := snapshot(t, dir)
	m, err := ro.Verify(v)
	if err != nil || m.Source != SourceLocal || m.SHA256 != sha(bin) {
		t.Fatalf("read-only Verify = %+v, %v", m, err)
	}
	assertUnchanged(t, before, snapshot(t, dir))

	m, err = s.Verify(v)
	if err != nil {
		t.Fatal(err)
	}
	if m.Source != SourceLocal || m.SHA256 != sha(bin) || m.ReportedVersion != "6.1.0" || m.Version != "6.2.4" || m.FetchedAt.IsZero() {
		t.Errorf("manifest %+v", m)
	}
	if !hasLog(hook, logrus.InfoLevel, "adopted hand-placed release", "release=v6.2.4") {
		t.Errorf("no adoption log:\n%s", logText(hook))
	}
	var onDisk Manifest
	raw, err := os.ReadFile(s.ManifestPath(v))
	if err != nil || json.Unmarshal(raw, &onDisk) != nil || onDisk.SHA256 != sha(bin) || onDisk.Source != "local" {
		t.Fatalf("manifest on disk %s, %v", raw, err)
	}
	noTemp(t, filepath.Join(dir, "v6.2.4"))

	// From now on it is held to that manifest.
	os.WriteFile(s.BinPath(v), fakeLavap("version=6.2.4"), 0o755)
	if _, err := s.Verify(v); err == nil || !strings.Contains(err.Error(), "its manifest says "+sha(bin)) {
		t.Fatalf("Verify after change = %v", err)
	}
}

func TestUsable(t *testing.T) {
	dir := t.TempDir()
	s := &Store{Dir: dir}
	writeRelease(t, dir, "6.2.5", fakeLavap("version=6.2.5"), true)
	writeRelease(t, dir, "6.2.6", fakeLavap("version=6.2.6"), false)
	writeRelease(t, dir, "6.2.7", nil, false)
	got := s.Usable()
	want := []chain.Version{mustVersion(t, "6.2.5"), mustVersion(t, "6.2.6")}
	if !slices.Equal(got, want) {
		t.Fatalf("Usable = %v, want %v", got, want)
	}
}

func TestPruneKeepsNewestAndProtected(t *testing.T) {
	dir := t.TempDir()
	s := &Store{Dir: dir}
	for _, v := range []string{"6.2.1", "6.2.2", "6.2.3", "6.2.4", "6.2.5", "6.2.6"} {
		writeRelease(t, dir, v, []byte("x"), false)
	}
	removed, err := s.Prune(3, mustVersion(t, "6.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []chain.Version{mustVersion(t, "6.2.1"), mustVersion(t, "6.2.3")}; !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	want := []chain.Version{mustVersion(t, "6.2.2"), mustVersion(t, "6.2.4"), mustVersion(t, "6.2.5"), mustVersion(t, "6.2.6")}
	if got := s.List(); !slices.Equal(got, want) {
		t.Fatalf("left %v, want %v", got, want)
	}
	// Nothing to do: nothing removed.
	if removed, err := s.Prune(10); err != nil || len(removed) != 0 {
		t.Fatalf("Prune(10) = %v, %v", removed, err)
	}
}

func TestCleanTemp(t *testing.T) {
	dir := t.TempDir()
	s := &Store{Dir: dir}
	writeRelease(t, dir, "6.2.5", []byte("x"), false)
	os.WriteFile(filepath.Join(dir, ".tmp-lavap-v6.2.6-123"), []byte("half"), 0o600)
	os.MkdirAll(filepath.Join(dir, ".tmp-v6.2.6-456", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, ".lock"), nil, 0o600)
	if err := s.CleanTemp(); err != nil {
		t.Fatal(err)
	}
	noTemp(t, dir)
	for _, keep := range []string{".lock", "v6.2.5/lavap"} {
		if _, err := os.Stat(filepath.Join(dir, keep)); err != nil {
			t.Errorf("%s removed: %v", keep, err)
		}
	}
}

func TestReportedVersion(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	if got := ReportedVersion(ctx, write("good", fakeLavap("version=6.2.5"))); got != "6.2.5" {
		t.Errorf("good: %q", got)
	}
	if got := ReportedVersion(ctx, write("old", fakeLavap("noversion"))); got != "" {
		t.Errorf("no version command: %q", got)
	}
	if got := ReportedVersion(ctx, filepath.Join(dir, "missing")); got != "" {
		t.Errorf("missing: %q", got)
	}
	if got := ReportedVersion(ctx, write("data", []byte("not a program"))); got != "" {
		t.Errorf("not a program: %q", got)
	}
	hang := write("hang", fakeLavap("hang"))
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if got := ReportedVersion(tctx, hang); got != "" {
		t.Errorf("hang: %q", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a hanging version command took %v", d)
	}
}

func TestLimitedBuffer(t *testing.T) {
	b := limitedBuffer{max: 4}
	for _, s := range []string{"ab", "cdef", "gh"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if b.String() != "abcd" {
		t.Fatalf("kept %q", b.String())
	}
}
