package upgrade

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// releaseServer is a fake GitHub releases host on 127.0.0.1.
type releaseServer struct {
	*httptest.Server
	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	hits     map[string]int
}

func newReleaseServer(t testing.TB) *releaseServer {
	rs := &releaseServer{handlers: map[string]http.HandlerFunc{}, hits: map[string]int{}}
	rs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		h := rs.handlers[r.URL.Path]
		rs.hits[r.URL.Path]++
		rs.mu.Unlock()
		if h == nil {
			http.NotFound(w, r)
			return
		}
		h(w, r)
	}))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *releaseServer) handle(path string, h http.HandlerFunc) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.handlers[path] = h
}

func (rs *releaseServer) serve(path string, body []byte) {
	rs.handle(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})
}

func (rs *releaseServer) count(path string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.hits[path]
}

func assetName(version string) string {
	return "lavap-v" + version + "-" + runtime.GOOS + "-" + runtime.GOARCH
}

func assetPath(version string) string { return "/download/v" + version + "/" + assetName(version) }

func sumsPath(version string) string { return "/download/v" + version + "/sha256sum.txt" }

// checksums is a sha256sum.txt as a release publishes it: every binary and
// platform, and a line this parser must skip.
func checksums(version, sum string) []byte {
	other := sha([]byte("other"))
	return []byte(strings.Join([]string{
		other + "  lavap-v" + version + "-darwin-arm64",
		other + "  lavad-v" + version + "-" + runtime.GOOS + "-" + runtime.GOARCH,
		"not a checksum line",
		sum + " *" + assetName(version),
		other + "  lavavisor-v" + version + "-" + runtime.GOOS + "-" + runtime.GOARCH,
		"",
	}, "\n"))
}

func (rs *releaseServer) fetcher(log *logrus.Entry) *Fetcher {
	return &Fetcher{
		URL:             rs.URL + "/download/v{version}/lavap-v{version}-{os}-{arch}",
		Checksums:       rs.URL + "/download/v{version}/sha256sum.txt",
		RequireChecksum: true,
		Timeout:         10 * time.Second,
		MaxSize:         64 << 20,
		Log:             log,
	}
}

// publish serves release version with body and its checksums.
func (rs *releaseServer) publish(version string, body []byte) {
	rs.serve(assetPath(version), body)
	rs.serve(sumsPath(version), checksums(version, sha(body)))
}

func TestFetchInstalls(t *testing.T) {
	rs := newReleaseServer(t)
	bin := fakeLavap("version=6.2.5")
	rs.publish("6.2.5", bin)
	dir := filepath.Join(t.TempDir(), "upgrades") // created by Fetch
	log, hook := testLog()
	s := &Store{Dir: dir, Log: log}
	f := rs.fetcher(log)
	var progress strings.Builder
	f.Progress = &progress // not a terminal: log lines only
	v := mustVersion(t, "6.2.5")

	m, err := f.Fetch(context.Background(), s, v)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != "6.2.5" || m.SHA256 != sha(bin) || m.Source != "url" || m.URL != rs.URL+assetPath("6.2.5") || m.ReportedVersion != "6.2.5" || m.FetchedAt.IsZero() {
		t.Errorf("manifest %+v", m)
	}
	got, err := os.ReadFile(s.BinPath(v))
	if err != nil || sha(got) != sha(bin) {
		t.Fatalf("installed binary: %v", err)
	}
	fi, _ := os.Stat(s.BinPath(v))
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", fi.Mode())
	}
	var onDisk Manifest
	raw, _ := os.ReadFile(s.ManifestPath(v))
	if err := json.Unmarshal(raw, &onDisk); err != nil || onDisk.SHA256 != m.SHA256 || onDisk.URL != m.URL {
		t.Errorf("manifest.json %s: %v", raw, err)
	}
	if _, err := s.Verify(v); err != nil {
		t.Errorf("Verify after Fetch: %v", err)
	}
	noTemp(t, dir)
	if progress.Len() != 0 {
		t.Errorf("progress bar drawn on a non-terminal: %q", progress.String())
	}
	if !hasLog(hook, logrus.InfoLevel, "release installed", "verified=true") {
		t.Errorf("no install log:\n%s", logText(hook))
	}

	// Again: already there, no second download.
	if _, err := f.Fetch(context.Background(), s, v); err != nil {
		t.Fatal(err)
	}
	if n := rs.count(assetPath("6.2.5")); n != 1 {
		t.Errorf("asset downloaded %d times", n)
	}
}

func TestFetchReportedVersionIsOnlyAWarning(t *testing.T) {
	for _, c := range []struct {
		mode, reported, warning string
	}{
		{"version=6.1.0", "6.1.0", "reports another version than its tag"},
		{"noversion", "", "no working `version` command"},
		{"hang", "", "no working `version` command"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			rs := newReleaseServer(t)
			rs.publish("6.2.5", fakeLavap(c.mode))
			log, hook := testLog()
			// Only the hanging binary needs the timer: the others must be
			// run and answer, however long an exec takes on a busy machine.
			timeout := time.Minute
			if c.mode == "hang" {
				timeout = 300 * time.Millisecond
			}
			s := &Store{Dir: t.TempDir(), Log: log, VersionTimeout: timeout}
			m, err := rs.fetcher(log).Fetch(context.Background(), s, mustVersion(t, "6.2.5"))
			if err != nil {
				t.Fatal(err)
			}
			if m.ReportedVersion != c.reported {
				t.Errorf("reported_version %q, want %q", m.ReportedVersion, c.reported)
			}
			if !hasLog(hook, logrus.WarnLevel, c.warning) {
				t.Errorf("no warning %q:\n%s", c.warning, logText(hook))
			}
			if _, err := s.Verify(mustVersion(t, "6.2.5")); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestFetchChecksumVariants(t *testing.T) {
	bin := fakeLavap("version=6.2.5")
	name := assetName("6.2.5")
	cases := []struct {
		name    string
		sums    []byte // nil: 404
		require bool
		wantErr string // "": installed
		warn    string
	}{
		{"mismatch", checksums("6.2.5", sha([]byte("something else"))), false,
			"sha256 mismatch for " + name + ": downloaded " + sha(bin) + ", checksums file says " + sha([]byte("something else")), ""},
		{"no line, required", checksums("6.2.4", sha(bin)), true,
			"no checksum for " + name + " in %URL%" + sumsPath("6.2.5") + ": refusing an unverifiable binary", ""},
		{"no line, not required", checksums("6.2.4", sha(bin)), false, "", "INSTALLING AN UNVERIFIED BINARY: no checksum for " + name},
		{"no file, required", nil, true, "no checksums file at %URL%" + sumsPath("6.2.5") + " (404): refusing an unverifiable binary", ""},
		{"no file, not required", nil, false, "", "INSTALLING AN UNVERIFIED BINARY: no checksums file"},
		{"two sums", []byte(sha(bin) + "  " + name + "\n" + sha([]byte("x")) + "  ./" + name + "\n"), false, "is listed with two different sums", ""},
		{"listed with a path", []byte(sha(bin) + "  build/" + name + "\n"), true, "", ""},
		{"uppercase hex", []byte(strings.ToUpper(sha(bin)) + "  " + name + "\r\n"), true, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := newReleaseServer(t)
			rs.serve(assetPath("6.2.5"), bin)
			if c.sums != nil {
				rs.serve(sumsPath("6.2.5"), c.sums)
			}
			log, hook := testLog()
			s := &Store{Dir: t.TempDir(), Log: log}
			writeRelease(t, s.Dir, "6.2.4", fakeLavap("version=6.2.4"), true)
			f := rs.fetcher(log)
			f.RequireChecksum = c.require
			before := snapshot(t, s.Dir)
			m, err := f.Fetch(context.Background(), s, mustVersion(t, "6.2.5"))
			if c.wantErr != "" {
				want := strings.ReplaceAll(c.wantErr, "%URL%", rs.URL)
				if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "fetch lavap v6.2.5: ") {
					t.Fatalf("err = %v\nwant %q", err, want)
				}
				assertUnchanged(t, before, snapshot(t, s.Dir))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.SHA256 != sha(bin) {
				t.Errorf("sha %s", m.SHA256)
			}
			if c.warn != "" && !hasLog(hook, logrus.WarnLevel, c.warn) {
				t.Errorf("no warning %q:\n%s", c.warn, logText(hook))
			}
			if c.warn == "" && hasLog(hook, logrus.WarnLevel, "UNVERIFIED") {
				t.Errorf("unexpected warning:\n%s", logText(hook))
			}
		})
	}
}

func TestFetchNoChecksumsURL(t *testing.T) {
	rs := newReleaseServer(t)
	rs.publish("6.2.5", fakeLavap("version=6.2.5"))
	log, _ := testLog()
	f := rs.fetcher(log)
	f.Checksums = ""
	s := &Store{Dir: t.TempDir(), Log: log}
	_, err := f.Fetch(context.Background(), s, mustVersion(t, "6.2.5"))
	if err == nil || !strings.Contains(err.Error(), "no checksums URL is configured: refusing an unverifiable binary") {
		t.Fatalf("err = %v", err)
	}
	if rs.count(assetPath("6.2.5")) != 0 {
		t.Errorf("downloaded although it would be refused")
	}
}

func TestFetchBadAnswers(t *testing.T) {
	bin := fakeLavap("version=6.2.5")
	big := make([]byte, 2<<20)
	small := big[:300<<10]
	cases := []struct {
		name    string
		handler http.HandlerFunc // nil: 404
		sum     string
		want    string
	}{
		{"404", nil, sha(bin), "download %URL%" + assetPath("6.2.5") + ": 404 Not Found"},
		{"500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, sha(bin), "500 Internal Server Error"},
		{"stalls mid-body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(small)))
			w.Write(small[:len(small)/2])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, sha(small), "not done within download.timeout (500ms)"},
		{"over max-size with Content-Length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big)
		}, sha(big), fmt.Sprintf("%d bytes, above download.max-size (%d bytes)", len(big), 1<<20)},
		{"over max-size chunked", func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(big); i += 64 << 10 {
				w.Write(big[i : i+64<<10])
				w.(http.Flusher).Flush()
			}
		}, sha(big), fmt.Sprintf("more than download.max-size (%d bytes)", 1<<20)},
		{"HTML by Content-Type", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(bin)
		}, sha(bin), "not a binary: the server sent an HTML page (Content-Type text/html; charset=utf-8)"},
		{"HTML by content", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write([]byte("\n<!DOCTYPE html><html>Sign in</html>"))
		}, sha(bin), "not a binary: the server sent a page starting with"},
		{"empty", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
		}, sha(nil), "empty answer"},
		{"cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(small)))
			w.Write(small[:100])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, sha(small), "unexpected EOF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := newReleaseServer(t)
			if c.handler != nil {
				rs.handle(assetPath("6.2.5"), c.handler)
			}
			rs.serve(sumsPath("6.2.5"), checksums("6.2.5", c.sum))
			log, _ := testLog()
			s := &Store{Dir: t.TempDir(), Log: log}
			writeRelease(t, s.Dir, "6.2.4", fakeLavap("version=6.2.4"), true)
			f := rs.fetcher(log)
			// Only the stalling server needs the timer; the other answers
			// must end the download by themselves, however slow the machine.
			stalls := strings.Contains(c.want, "download.timeout")
			f.Timeout = time.Minute
			if stalls {
				f.Timeout = 500 * time.Millisecond
			}
			f.MaxSize = 1 << 20
			before := snapshot(t, s.Dir)
			start := time.Now()
			_, err := f.Fetch(context.Background(), s, mustVersion(t, "6.2.5"))
			want := strings.ReplaceAll(c.want, "%URL%", rs.URL)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v\nwant %q", err, want)
			}
			if d := time.Since(start); !stalls && d >= f.Timeout {
				t.Errorf("ended by the download timeout after %v, not by the answer", d)
			}
			assertUnchanged(t, before, snapshot(t, s.Dir))
		})
	}
}

func TestFetchReplacesBrokenFolderKeepingIt(t *testing.T) {
	rs := newReleaseServer(t)
	bin := fakeLavap("version=6.2.5")
	rs.publish("6.2.5", bin)
	log, hook := testLog()
	s := &Store{Dir: t.TempDir(), Log: log}
	writeRelease(t, s.Dir, "6.2.5", nil, false) // an empty lavap
	os.WriteFile(filepath.Join(s.Dir, "v6.2.5", "notes.txt"), []byte("mine"), 0o644)

	if _, err := rs.fetcher(log).Fetch(context.Background(), s, mustVersion(t, "6.2.5")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(mustVersion(t, "6.2.5")); err != nil {
		t.Fatal(err)
	}
	aside, _ := filepath.Glob(filepath.Join(s.Dir, "v6.2.5.rejected-*"))
	if len(aside) != 1 {
		t.Fatalf("kept aside: %v", aside)
	}
	if b, err := os.ReadFile(filepath.Join(aside[0], "notes.txt")); err != nil || string(b) != "mine" {
		t.Errorf("the old folder's content: %q, %v", b, err)
	}
	if !hasLog(hook, logrus.WarnLevel, "is empty") {
		t.Errorf("no warning about the broken folder:\n%s", logText(hook))
	}
}

func TestFetchCleansLeftovers(t *testing.T) {
	rs := newReleaseServer(t)
	rs.publish("6.2.5", fakeLavap("version=6.2.5"))
	log, _ := testLog()
	s := &Store{Dir: t.TempDir(), Log: log}
	os.WriteFile(filepath.Join(s.Dir, ".tmp-lavap-v6.2.5-1"), []byte("half a download"), 0o600)
	os.MkdirAll(filepath.Join(s.Dir, ".tmp-v6.2.5-2"), 0o755)
	if _, err := rs.fetcher(log).Fetch(context.Background(), s, mustVersion(t, "6.2.5")); err != nil {
		t.Fatal(err)
	}
	noTemp(t, s.Dir)
}

func TestFetchBadDestination(t *testing.T) {
	rs := newReleaseServer(t)
	rs.publish("6.2.5", fakeLavap("version=6.2.5"))
	log, _ := testLog()
	base := t.TempDir()
	os.WriteFile(filepath.Join(base, "file"), []byte("x"), 0o644)
	for _, c := range []struct{ dir, want string }{
		{filepath.Join(base, "missing", "upgrades"), "releases folder: mkdir " + filepath.Join(base, "missing", "upgrades") + ": no such file or directory"},
		{filepath.Join(base, "file"), "releases folder " + filepath.Join(base, "file") + " is not a folder"},
		{filepath.Join(base, "file", "upgrades"), "not a directory"},
	} {
		before := snapshot(t, base)
		_, err := rs.fetcher(log).Fetch(context.Background(), &Store{Dir: c.dir}, mustVersion(t, "6.2.5"))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Fetch into %s: %v\nwant %q", c.dir, err, c.want)
		}
		assertUnchanged(t, before, snapshot(t, base))
	}
	if rs.count(assetPath("6.2.5")) != 0 {
		t.Errorf("downloaded with nowhere to put it")
	}
}

func TestFetchBadInputs(t *testing.T) {
	log, _ := testLog()
	s := &Store{Dir: t.TempDir()}
	before := snapshot(t, s.Dir)
	for _, c := range []struct {
		f    *Fetcher
		v    string
		want string
	}{
		{&Fetcher{Log: log}, "0.0.0", "no version given"},
		{&Fetcher{URL: "file:///srv/lavap", Log: log}, "6.2.5", "want http:// or https://"},
		{&Fetcher{URL: "http://127.0.0.1:1/", Log: log}, "6.2.5", "names no file"},
	} {
		_, err := c.f.Fetch(context.Background(), s, mustVersion(t, c.v))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Fetch(%s, %s) = %v, want %q", c.f.URL, c.v, err, c.want)
		}
	}
	assertUnchanged(t, before, snapshot(t, s.Dir))
}

func TestAssetURL(t *testing.T) {
	f := &Fetcher{Checksums: DefaultChecksumsURL}
	v := mustVersion(t, "6.2.5")
	if got, want := f.AssetURL(v), "https://github.com/lavanet/lava/releases/download/v6.2.5/lavap-v6.2.5-"+runtime.GOOS+"-"+runtime.GOARCH; got != want {
		t.Errorf("AssetURL = %s, want %s", got, want)
	}
	if got := f.ChecksumsURL(v); got != "https://github.com/lavanet/lava/releases/download/v6.2.5/sha256sum.txt" {
		t.Errorf("ChecksumsURL = %s", got)
	}
	if got, _ := f.AssetName(v); got != assetName("6.2.5") {
		t.Errorf("AssetName = %s", got)
	}
	if got := (&Fetcher{}).ChecksumsURL(v); got != "" {
		t.Errorf("no checksums: %q", got)
	}
}

// Two LavaVisor processes with one shared releases folder, started at once:
// one downloads, the other waits for the lock and then uses that download.
func TestConcurrentFetchDownloadsOnce(t *testing.T) {
	rs := newReleaseServer(t)
	bin := fakeLavap("version=6.2.5")
	rs.serve(sumsPath("6.2.5"), checksums("6.2.5", sha(bin)))
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	rs.handle(assetPath("6.2.5"), func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(bin)
	})
	dir := filepath.Join(t.TempDir(), "shared-releases")
	os.Mkdir(dir, 0o755)

	lines := make(chan string, 100)
	var cmds []*helperRun
	for i := 0; i < 2; i++ {
		cmd := helperCmd(t, "fetch",
			"FETCH_URL="+rs.URL+"/download/v{version}/lavap-v{version}-{os}-{arch}",
			"FETCH_CHECKSUMS="+rs.URL+"/download/v{version}/sha256sum.txt",
			"FETCH_VERSION=6.2.5", "FETCH_DIR="+dir)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		cmds = append(cmds, &helperRun{cmd: cmd, out: &out})
	}

	deadline := time.After(20 * time.Second)
	select {
	case <-started:
	case <-deadline:
		t.Fatal("no download started")
	}
	// Let the download finish only once the other process is seen waiting.
	var seen []string
	for waiting := false; !waiting; {
		select {
		case l := <-lines:
			seen = append(seen, l)
			waiting = strings.Contains(l, "waiting for the releases lock") && strings.Contains(l, "is held by")
		case <-deadline:
			t.Fatalf("the second process never waited for the lock; logs:\n%s", strings.Join(seen, "\n"))
		}
	}
	close(release)
	var sums []string
	for _, c := range cmds {
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v: %s", c.cmd.Process.Pid, err, c.out.String())
		}
		var m Manifest
		if err := json.Unmarshal([]byte(c.out.String()), &m); err != nil {
			t.Fatalf("helper output %q: %v", c.out.String(), err)
		}
		sums = append(sums, m.SHA256)
	}
	if sums[0] != sha(bin) || sums[1] != sha(bin) {
		t.Errorf("sums %v", sums)
	}
	if n := rs.count(assetPath("6.2.5")); n != 1 {
		t.Errorf("asset downloaded %d times, want 1", n)
	}
	noTemp(t, dir)
}

// The releases folder is not writable by the user LavaVisor runs as.
func TestFetchUnwritableFolder(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run the helper as another user")
	}
	rs := newReleaseServer(t)
	rs.publish("6.2.5", fakeLavap("version=6.2.5"))
	base := t.TempDir()
	// The helper (uid 65534) must reach its binary and the folder.
	for p := base; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(base, "upgrade.test")
	if err := os.WriteFile(exe, self, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "releases")
	os.Mkdir(dir, 0o755) // root's, read-only to others
	writeRelease(t, dir, "6.2.4", fakeLavap("version=6.2.4"), true)
	before := snapshot(t, dir)

	cmd := helperCmd(t, "fetch",
		"FETCH_URL="+rs.URL+"/download/v{version}/lavap-v{version}-{os}-{arch}",
		"FETCH_CHECKSUMS="+rs.URL+"/download/v{version}/sha256sum.txt",
		"FETCH_VERSION=6.2.5", "FETCH_DIR="+dir)
	cmd.Path = exe
	cmd.Args[0] = exe
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	want := "fetch lavap v6.2.5: lock " + filepath.Join(dir, ".lock") + ": open " + filepath.Join(dir, ".lock") + ": permission denied"
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("helper: %v, said %q\nwant %q", err, out, want)
	}
	assertUnchanged(t, before, snapshot(t, dir))
	if rs.count(assetPath("6.2.5")) != 0 {
		t.Errorf("downloaded with nowhere to put it")
	}
}

type helperRun struct {
	cmd *exec.Cmd
	out *strings.Builder
}

// A LavaVisor SIGKILLed mid-download leaves no release under the final name and
// no lock; the next fetch removes its leftovers and succeeds.
func TestFetchKilledMidDownload(t *testing.T) {
	rs := newReleaseServer(t)
	bin := fakeLavap("version=6.2.5")
	rs.serve(sumsPath("6.2.5"), checksums("6.2.5", sha(bin)))
	midway := make(chan struct{}, 1)
	rs.handle(assetPath("6.2.5"), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(bin)))
		w.Write(bin[:len(bin)/2])
		w.(http.Flusher).Flush()
		midway <- struct{}{}
		<-r.Context().Done()
	})
	dir := t.TempDir()
	writeRelease(t, dir, "6.2.4", fakeLavap("version=6.2.4"), true)
	before := snapshot(t, dir)

	cmd := helperCmd(t, "fetch",
		"FETCH_URL="+rs.URL+"/download/v{version}/lavap-v{version}-{os}-{arch}",
		"FETCH_CHECKSUMS="+rs.URL+"/download/v{version}/sha256sum.txt",
		"FETCH_VERSION=6.2.5", "FETCH_DIR="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-midway:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the download never started")
	}
	// Wait until half the body is on disk, then kill.
	deadline := time.Now().Add(10 * time.Second)
	for {
		parts, _ := filepath.Glob(filepath.Join(dir, ".tmp-lavap-v6.2.5-*"))
		if len(parts) == 1 {
			if fi, err := os.Stat(parts[0]); err == nil && fi.Size() >= int64(len(bin)/2) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no partial download on disk")
		}
		time.Sleep(10 * time.Millisecond) // polling the file system, not synchronising goroutines
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	if _, err := os.Stat(filepath.Join(dir, "v6.2.5")); !os.IsNotExist(err) {
		t.Fatalf("a v6.2.5 folder exists after the kill: %v", err)
	}
	s := &Store{Dir: dir}
	if got := s.List(); len(got) != 1 || got[0].String() != "6.2.4" {
		t.Fatalf("List = %v", got)
	}
	// The lock died with the process.
	l, err := TryLock(filepath.Join(dir, ".lock"))
	if err != nil {
		t.Fatalf("lock after the kill: %v", err)
	}
	l.Unlock()

	rs.publish("6.2.5", bin)
	log, _ := testLog()
	if _, err := rs.fetcher(log).Fetch(context.Background(), &Store{Dir: dir, Log: log}, mustVersion(t, "6.2.5")); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, dir)
	for k := range after {
		if strings.HasPrefix(k, "v6.2.5") {
			delete(after, k)
		}
	}
	assertUnchanged(t, before, after)
}
