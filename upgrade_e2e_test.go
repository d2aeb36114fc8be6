package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// releaseServer serves the fake lavap builds as GitHub release assets with a
// sha256sum.txt listing every platform, and lets a test break them.
type releaseServer struct {
	*httptest.Server
	mu       sync.Mutex
	missing  map[string]bool // version -> asset 404
	badSum   map[string]bool // version -> wrong checksum listed
	override map[string][]byte
	hits     map[string]int
	hold     map[string]chan struct{} // version -> its asset is served once closed
	log      []string                 // every request path, in order
}

func newReleaseServer(t testing.TB) *releaseServer {
	rs := &releaseServer{missing: map[string]bool{}, badSum: map[string]bool{}, override: map[string][]byte{}, hits: map[string]int{}, hold: map[string]chan struct{}{}}
	rs.Server = httptest.NewServer(http.HandlerFunc(rs.serve))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *releaseServer) asset(version string) []byte {
	rs.mu.Lock()
	b, ok := rs.override[version]
	rs.mu.Unlock()
	if ok {
		return b
	}
	b, err := os.ReadFile(filepath.Join(fakeBuilds, version, "lavap"))
	if err != nil {
		return nil
	}
	return b
}

func (rs *releaseServer) serve(w http.ResponseWriter, r *http.Request) {
	// /v6.2.6/lavap-v6.2.6-linux-amd64 or /v6.2.6/sha256sum.txt
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	version := strings.TrimPrefix(parts[0], "v")
	rs.mu.Lock()
	rs.hits[r.URL.Path]++
	rs.log = append(rs.log, r.URL.Path)
	missing, bad, hold := rs.missing[version], rs.badSum[version], rs.hold[version]
	rs.mu.Unlock()
	b := rs.asset(version)
	name := fmt.Sprintf("lavap-v%s-%s-%s", version, runtime.GOOS, runtime.GOARCH)
	switch {
	case b == nil || missing && parts[1] == name:
		http.NotFound(w, r)
	case parts[1] == "sha256sum.txt":
		sum := sha256.Sum256(b)
		if bad {
			sum[0] ^= 0xff
		}
		fmt.Fprintf(w, "%x  lavap-v%s-darwin-arm64\n%x  %s\n%x  lavad-v%s-linux-amd64\n", sha256.Sum256([]byte("other")), version, sum, name, sha256.Sum256([]byte("lavad")), version)
	case parts[1] == name:
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

func (rs *releaseServer) set(f func(rs *releaseServer)) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	f(rs)
}

// requests is the server's request log: every path asked, in order.
func (rs *releaseServer) requests() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.log...)
}

func (rs *releaseServer) downloads(version string) int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.hits[fmt.Sprintf("/v%s/lavap-v%s-%s-%s", version, version, runtime.GOOS, runtime.GOARCH)]
}

// versionsFile is a file:// version source.
func (h *testHome) versions(pmin, ptarget string) {
	h.t.Helper()
	body := fmt.Sprintf("provider_min: %s\nprovider_target: %s\nconsumer_min: %s\nconsumer_target: %s\n", pmin, ptarget, pmin, ptarget)
	tmp := filepath.Join(h.dir, "versions.yml.tmp")
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.dir, "versions.yml")); err != nil {
		h.t.Fatal(err)
	}
}

// upgradeHome: two providers on v6.2.5, a file source, fast polls, and
// downloads from rs when given.
func upgradeHome(t *testing.T, rs *releaseServer, extra string, env ...string) *testHome {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	cfg := fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: 100ms\nstop-timeout: 5s\nlink: none\n", h.dir)
	if !strings.Contains(extra, "min-uptime") {
		cfg += "min-uptime: 300ms\n"
	}
	if rs != nil {
		cfg += fmt.Sprintf("auto-download: true\ndownload:\n  url: %s/v{version}/lavap-v{version}-{os}-{arch}\n  checksums: %s/v{version}/sha256sum.txt\n", rs.URL, rs.URL)
	}
	h.config(cfg + extra + "services:\n" + h.service("p1", "", env...) + h.service("p2", "", env...))
	return h
}

// crashingMinUptime is the min-uptime of the homes that get a placeCrashing
// release: its crash must come before the min-uptime, and a start of sh on a
// busy machine can take longer than upgradeHome's 300 ms.
const crashingMinUptime = "min-uptime: 3s\n"

// placeCrashing places a release that exits 1 at once, as lavap does with
// a wrong working folder: a script standing in for a broken release.
func (h *testHome) placeCrashing(version string) {
	h.t.Helper()
	dir := filepath.Join(h.root(), "upgrades", "v"+version)
	script := "#!/bin/sh\n[ \"$1\" = version ] && { echo " + version + "; exit 0; }\necho 'FTL could not load config file' >&2\nexit 1\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "lavap"), []byte(script), 0o755); err != nil {
		h.t.Fatal(err)
	}
}

// live counts the running processes of a service.
func (h *testHome) live(name string) int {
	n := 0
	for _, pid := range h.pids(name) {
		if alive(pid) {
			n++
		}
	}
	return n
}

func (h *testHome) currentTag() string {
	dir, err := filepath.EvalSymlinks(filepath.Join(h.root(), "current"))
	if err != nil {
		return ""
	}
	return filepath.Base(dir)
}

// versionOf returns the release of a service's last start record.
func (h *testHome) lastStartVersion(name string) string {
	ev := h.events(name)
	for i := len(ev) - 1; i >= 0; i-- {
		if f := strings.Fields(ev[i]); len(f) > 2 && f[0] == "start" {
			return f[2]
		}
	}
	return ""
}

func (h *testHome) state(t *testing.T) map[string]any {
	b, err := os.ReadFile(filepath.Join(h.root(), "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// noTemp checks the whole home for leftovers of atomic writes; call it once
// lavavisor stopped (state.json is rewritten every poll while it runs).
func (h *testHome) noTemp(t *testing.T) {
	t.Helper()
	noTempUnder(t, h.root())
}

// noReleaseTemp checks the releases folder only; safe while lavavisor runs
// and no download is in flight (a download writes a temporary file).
func (h *testHome) noReleaseTemp(t *testing.T) {
	t.Helper()
	noTempUnder(t, filepath.Join(h.root(), "upgrades"))
}

func noTempUnder(t *testing.T, root string) {
	t.Helper()
	for _, p := range tempFilesUnder(root) {
		t.Errorf("temporary file left: %s", p)
	}
}

// tempFilesUnder lists the leftovers of atomic writes under root.
func tempFilesUnder(root string) []string {
	var found []string
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), ".tmp") {
			found = append(found, p)
		}
		return nil
	})
	return found
}

func TestUpgradeTargetRaisedRollsEveryService(t *testing.T) {
	rs := newReleaseServer(t)
	h := upgradeHome(t, rs, "")
	p := h.start("start")
	p.waitFor("both on 6.2.5", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	old1, old2 := h.pids("p1")[0], h.pids("p2")[0]
	h.versions("6.2.5", "6.2.6")
	p.waitFor("both on 6.2.6", func() bool { return h.lastStartVersion("p1") == "6.2.6" && h.lastStartVersion("p2") == "6.2.6" })
	p.waitLog("upgrade done")
	if !contains(h.events("p1"), fmt.Sprintf("signal %d 6.2.5 INT", old1)) || !contains(h.events("p2"), fmt.Sprintf("signal %d 6.2.5 INT", old2)) {
		t.Errorf("old processes did not get SIGINT: %q %q", h.events("p1"), h.events("p2"))
	}
	if h.currentTag() != "v6.2.6" || rs.downloads("6.2.6") != 1 {
		t.Errorf("current %s, downloads %d", h.currentTag(), rs.downloads("6.2.6"))
	}
	// Rolling: p2 stopped only after p1 was up again on 6.2.6.
	if alive(old1) || alive(old2) {
		t.Error("old process alive")
	}
	lu := h.state(t)["last_upgrade"].(map[string]any)
	if lu["from"] != "6.2.5" || lu["to"] != "6.2.6" || lu["result"] != "success" {
		t.Errorf("last_upgrade %v", lu)
	}
	h.noReleaseTemp(t)
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	h.noTemp(t)
}

func TestUpgradeModeMinWaitsForMinimum(t *testing.T) {
	h := upgradeHome(t, nil, "upgrade: min\n")
	h.place("6.2.6")
	h.place("6.2.7")
	p := h.start("--log-level", "debug", "start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	p.waitLog("provider_target=6.2.6")
	p.waitLog("no upgrade")
	h.versions("6.2.6", "6.2.7")
	p.waitFor("moved to 6.2.7", func() bool { return h.lastStartVersion("p1") == "6.2.7" && h.lastStartVersion("p2") == "6.2.7" })
	if h.count("p1", "start") != 2 {
		t.Errorf("p1 started %d times", h.count("p1", "start"))
	}
}

func TestUpgradeChecksumMismatchThen404ThenFixed(t *testing.T) {
	rs := newReleaseServer(t)
	rs.set(func(rs *releaseServer) { rs.badSum["6.2.6"] = true })
	h := upgradeHome(t, rs, "")
	p := h.start("--log-level", "debug", "start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	p.waitLog("sha256 mismatch")
	rs.set(func(rs *releaseServer) { rs.badSum["6.2.6"] = false; rs.missing["6.2.6"] = true })
	p.waitLog("404")
	if h.count("p1", "start") != 1 || h.count("p2", "start") != 1 || h.currentTag() != "v6.2.5" {
		t.Fatalf("services restarted or current moved after a failed fetch: %q", h.events("p1"))
	}
	if _, err := os.Stat(filepath.Join(h.root(), "upgrades", "v6.2.6")); err == nil {
		t.Error("a failed fetch left a release folder")
	}
	h.noReleaseTemp(t)
	rs.set(func(rs *releaseServer) { rs.missing["6.2.6"] = false })
	p.waitFor("moved once the server is fixed", func() bool { return h.lastStartVersion("p2") == "6.2.6" })
}

func TestUpgradeCrashingReleaseRollsBackAndIsMarkedBad(t *testing.T) {
	h := upgradeHome(t, nil, crashingMinUptime)
	h.placeCrashing("6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	p.waitLog("rolled back")
	p.waitFor("p1 back on 6.2.5", func() bool { return h.count("p1", "start") == 2 && h.lastStartVersion("p1") == "6.2.5" })
	if h.currentTag() != "v6.2.5" {
		t.Errorf("current = %s after rollback", h.currentTag())
	}
	if h.count("p2", "start") != 1 {
		t.Error("p2 was restarted although the rollout stopped at p1")
	}
	if !strings.Contains(p.out.String(), "exit_code=1") || !strings.Contains(p.out.String(), "could not load config file") {
		t.Errorf("rollback error lacks the exit code or last lines:\n%s", p.out.String())
	}
	bad := h.state(t)["bad"].(map[string]any)
	if _, ok := bad["6.2.6"]; !ok {
		t.Errorf("6.2.6 not marked bad: %v", bad)
	}
	// The bad mark holds across a restart of LavaVisor: no second attempt.
	p.signal(syscall.SIGTERM)
	p.wait()
	p = h.start("start")
	p.waitFor("restarted", func() bool { return h.count("p1", "start") == 3 })
	p.waitLog("polling the chain")
	if h.lastStartVersion("p1") != "6.2.5" || h.currentTag() != "v6.2.5" {
		t.Errorf("bad release tried again: %s %s", h.lastStartVersion("p1"), h.currentTag())
	}
}

func TestUpgradeHostileVersionsChangeNothing(t *testing.T) {
	h := upgradeHome(t, nil, "")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 })
	for _, c := range []struct{ v, msg string }{
		{"../../x", `invalid version \"../../x\"`},
		{"1.2", `invalid version \"1.2\"`},
		{"06.2.5", `invalid version \"06.2.5\"`},
		{`"9.9.9; rm -rf /"`, `invalid version \"9.9.9; rm -rf /\"`},
		{strings.Repeat("9", 20000), "too long"},
	} {
		h.versions("6.2.5", c.v)
		p.waitLog(c.msg)
	}
	entries, _ := os.ReadDir(filepath.Join(h.root(), "upgrades"))
	if len(entries) != 1 || h.count("p1", "start") != 1 || h.currentTag() != "v6.2.5" {
		t.Errorf("something changed: %v, starts %d", entries, h.count("p1", "start"))
	}
}

func TestUpgradePinHoldsRelease(t *testing.T) {
	h := upgradeHome(t, nil, "pin: 6.2.5\n")
	h.place("6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 })
	h.versions("6.2.6", "6.2.6")
	p.waitLog("below the chain's minimum")
	if h.count("p1", "start") != 1 || h.currentTag() != "v6.2.5" {
		t.Error("pin not held")
	}
}

func TestUpgradeAtStartLinksBeforeFirstStart(t *testing.T) {
	h := upgradeHome(t, nil, "")
	h.place("6.2.6")
	h.versions("6.2.6", "6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("upgrade done")
	if h.lastStartVersion("p1") != "6.2.6" || h.lastStartVersion("p2") != "6.2.6" || h.currentTag() != "v6.2.6" {
		t.Errorf("not started on 6.2.6: %q", h.events("p1"))
	}
}
