package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// assertConsistent checks the invariants after a LavaVisor was killed and
// started again: current is a complete verified release, no temporary file,
// every service runs exactly once on an allowed release, and no process of
// the killed instance remains.
func assertConsistent(t *testing.T, h *testHome, p *proc, oldPids []int, allowed ...string) {
	t.Helper()
	cur := h.currentTag()
	var m struct{ SHA256 string }
	b, err := os.ReadFile(filepath.Join(h.root(), "upgrades", cur, "manifest.json"))
	if err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("current %s has no manifest: %v", cur, err)
	}
	bin, _ := os.ReadFile(filepath.Join(h.root(), "upgrades", cur, "lavap"))
	if fmt.Sprintf("%x", sha256.Sum256(bin)) != m.SHA256 {
		t.Errorf("current %s does not verify", cur)
	}
	for _, pid := range oldPids {
		if alive(pid) {
			t.Errorf("process %d of the killed instance is alive", pid)
		}
	}
	for _, name := range []string{"p1", "p2"} {
		if live := h.live(name); live != 1 {
			t.Errorf("%s runs %d times", name, live)
		}
		v := h.lastStartVersion(name)
		if !contains(allowed, v) {
			t.Errorf("%s runs %s, want one of %v", name, v, allowed)
		}
	}
	// state.json is rewritten every poll: look for leftovers once stopped.
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	h.noTemp(t)
}

func allPids(h *testHome) []int { return append(h.pids("p1"), h.pids("p2")...) }

// lastAlive reports whether the last process service name started lives.
// The timeline is read once: it grows while a service restarts.
func lastAlive(h *testHome, name string) bool {
	pids := h.pids(name)
	return len(pids) > 0 && alive(pids[len(pids)-1])
}

// TestKilledDuringRollingUpgradeResumes kills LavaVisor with SIGKILL at each
// step of a rolling upgrade and starts it again.
func TestKilledDuringRollingUpgradeResumes(t *testing.T) {
	for _, c := range []struct {
		name string
		at   func(h *testHome) bool // when to kill
	}{
		{"swapped", func(h *testHome) bool { return h.currentTag() == "v6.2.6" }},
		{"between", func(h *testHome) bool { return h.lastStartVersion("p1") == "6.2.6" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := upgradeHome(t, nil, "min-uptime: 2s\n")
			h.place("6.2.6")
			p := h.start("start")
			p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
			h.versions("6.2.5", "6.2.6")
			p.waitFor(c.name, func() bool { return c.at(h) })
			p.signal(syscall.SIGKILL)
			p.wait()
			old := allPids(h)
			p.waitFor2(t, "children gone", func() bool {
				for _, pid := range old {
					if alive(pid) {
						return false
					}
				}
				return true
			})
			p2 := h.start("start")
			p2.waitLog("lavavisor started")
			p2.waitFor("services up", func() bool { return lastAlive(h, "p1") })
			p2.waitLog("upgrade done")
			assertConsistent(t, h, p2, old, "6.2.6")
			if !strings.Contains(p2.out.String(), "an upgrade was interrupted") {
				t.Error("the interrupted upgrade was not reported")
			}
		})
	}
}

func TestKilledDuringRollbackStaysOnPrevious(t *testing.T) {
	h := upgradeHome(t, nil, crashingMinUptime)
	h.placeCrashing("6.2.6")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	p.waitLog("rolling back")
	p.signal(syscall.SIGKILL)
	p.wait()
	old := allPids(h)
	p2 := h.start("start")
	p2.waitLog("polling the chain")
	p2.waitFor("both running", func() bool {
		return lastAlive(h, "p1") && lastAlive(h, "p2")
	})
	assertConsistent(t, h, p2, old[:0], "6.2.5")
	if h.currentTag() != "v6.2.5" {
		t.Errorf("current %s", h.currentTag())
	}
}

func TestKilledDuringDownloadLeavesNothing(t *testing.T) {
	rs := newReleaseServer(t)
	stall := make(chan struct{})
	defer close(stall)
	big := append([]byte{}, rs.asset("6.2.6")...)
	rs.set(func(rs *releaseServer) { rs.override["6.2.6"] = big })
	h := upgradeHome(t, rs, "")
	inner := rs.Config.Handler
	started := make(chan struct{}, 1)
	rs.Config.Handler = stallHandler(inner, "/v6.2.6/lavap-", stall, started)
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 })
	h.versions("6.2.5", "6.2.6")
	<-started
	p.signal(syscall.SIGKILL)
	p.wait()
	if h.currentTag() != "v6.2.5" {
		t.Errorf("current moved: %s", h.currentTag())
	}
	if _, err := os.Stat(filepath.Join(h.root(), "upgrades", "v6.2.6")); err == nil {
		t.Error("partial release folder")
	}
}

// stallHandler sends half of a matching download, signals started, and then
// stalls until stall is closed.
func stallHandler(inner http.Handler, prefix string, stall <-chan struct{}, started chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			inner.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Length", "10000000")
		w.Write(make([]byte, 100000))
		w.(http.Flusher).Flush()
		select {
		case started <- struct{}{}:
		default:
		}
		<-stall
	})
}
