package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/control"
)

// Health (issue 14, SPEC §7) end to end: fake releases that serve or not on
// real sockets, a real lavavisor judging them.

// healthService is a service block whose fake serves /health on its own
// port with the given FAKE_HEALTH modes, and a fast check of it.
func (h *testHome) healthService(name, modes, extra string) (block, addr string) {
	addr = freeAddr(h.t)
	keys := map[string]string{"start-interval": "100ms", "interval": "200ms", "timeout": "1s", "start-period": "2s", "failures": "2"}
	order := []string{"start-interval", "interval", "timeout", "start-period", "failures"}
	for _, l := range strings.Split(strings.TrimSpace(extra), "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			if _, known := keys[k]; !known {
				order = append(order, k)
			}
			keys[k] = v
		}
	}
	check := fmt.Sprintf("health:\n  http: http://%s/health\n", addr)
	for _, k := range order {
		check += fmt.Sprintf("  %s: %s\n", k, keys[k])
	}
	return h.service(name, check, "FAKE_HEALTH_ADDR="+addr, "FAKE_HEALTH="+modes, "FAKE_TIMELINE="+h.timeline(name)), addr
}

func (h *testHome) timeline(name string) string { return filepath.Join(h.dir, name+".timeline") }

// starts are the start times of a service's processes on version.
func (h *testHome) starts(name, version string) []time.Time {
	b, _ := os.ReadFile(h.timeline(name))
	var out []time.Time
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[1] == "start" && f[3] == version {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			out = append(out, time.Unix(0, ns))
		}
	}
	return out
}

func healthHome(t *testing.T) (*testHome, string) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	return h, fmt.Sprintf("node: file://%s/versions.yml\npoll-interval: 100ms\nmin-uptime: 300ms\nlink: none\nservices:\n", h.dir)
}

func TestUnhealthyReleaseIsRolledBack(t *testing.T) {
	h, base := healthHome(t)
	h.place("6.2.6")
	block, addr := h.healthService("p1", "6.2.6=fail,*=ok", "")
	h.config(base + block)
	p := h.start("start")
	p.waitFor("p1 healthy", func() bool { return healthOf(t, h, "p1") == "healthy" })
	h.versions("6.2.5", "6.2.6")
	p.waitLog("rolled back")
	p.waitFor("p1 back on 6.2.5, healthy", func() bool { return h.lastStartVersion("p1") == "6.2.5" && healthOf(t, h, "p1") == "healthy" })
	want := fmt.Sprintf("health: GET http://%s/health: 503", addr)
	if !strings.Contains(p.out.String(), want) {
		t.Errorf("the rollback does not name the check: want %q", want)
	}
	bad := h.state(t)["bad"].(map[string]any)["6.2.6"].(map[string]any)
	if r := bad["reason"].(string); !strings.Contains(r, want) {
		t.Errorf("bad mark reason %q, want it to contain %q", r, want)
	}
	if h.currentTag() != "v6.2.5" {
		t.Errorf("current = %s", h.currentTag())
	}
}

// healthOf is a service's health as status shows it; "" until the
// instance answers.
func healthOf(t *testing.T, h *testHome, name string) string {
	code, out := runLavavisor(t, "--directory", h.dir, "status", "--json")
	if code != 0 {
		return ""
	}
	var rep control.Report
	if json.Unmarshal([]byte(out), &rep) != nil {
		return ""
	}
	for _, s := range rep.Services {
		if s.Name == name {
			return s.Health
		}
	}
	return ""
}

func TestRollingWaitsForHealthy(t *testing.T) {
	h, base := healthHome(t)
	h.place("6.2.6")
	const ready = 700 * time.Millisecond
	var blocks string
	for _, n := range []string{"p1", "p2", "p3"} {
		b, _ := h.healthService(n, "6.2.6=after=700ms,*=ok", "")
		blocks += b
	}
	h.config(base + blocks)
	p := h.start("start")
	p.waitFor("all healthy", func() bool {
		return healthOf(t, h, "p1") == "healthy" && healthOf(t, h, "p2") == "healthy" && healthOf(t, h, "p3") == "healthy"
	})
	h.versions("6.2.5", "6.2.6")
	p.waitLog("upgrade done")
	s1, s2, s3 := h.starts("p1", "6.2.6"), h.starts("p2", "6.2.6"), h.starts("p3", "6.2.6")
	if len(s1) != 1 || len(s2) != 1 || len(s3) != 1 {
		t.Fatalf("starts on 6.2.6: %v %v %v", s1, s2, s3)
	}
	// Each moves only once the one before answers healthy, 700 ms after its start.
	if gap := s2[0].Sub(s1[0]); gap < ready {
		t.Errorf("p2 started %s after p1, before p1 could be healthy (%s)", gap, ready)
	}
	if gap := s3[0].Sub(s2[0]); gap < ready {
		t.Errorf("p3 started %s after p2, before p2 could be healthy (%s)", gap, ready)
	}
	t.Logf("gaps: p1->p2 %s, p2->p3 %s (healthy after %s)", s2[0].Sub(s1[0]), s3[0].Sub(s2[0]), ready)
}

func TestUnhealthyServiceIsNotReadyAndRestarted(t *testing.T) {
	h, base := healthHome(t)
	// Healthy for 1.5 s, then 503 for 1.5 s, and so on.
	block, _ := h.healthService("p1", "*=flap=1500ms", "restart-after: 300ms\nstart-period: 1s")
	h.config(base + block)
	p := h.start("--metrics-addr", "127.0.0.1:0", "start")
	base2 := metricsURL(p)
	p.waitFor("p1 healthy", func() bool { return healthOf(t, h, "p1") == "healthy" })
	if code, body := get(t, base2+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q while healthy", code, body)
	}
	// failures 2 × (interval 200ms + timeout 1s) + interval: 503 within 2.6 s
	// of turning unhealthy; the restart follows 300 ms after.
	p.waitFor("/readyz 503 naming unhealthy", func() bool {
		code, body := get(t, base2+"/readyz")
		return code == 503 && strings.Contains(body, "p1 is unhealthy")
	})
	p.waitLog("restarting it")
	p.waitFor("p1 restarted", func() bool { return h.count("p1", "start") >= 2 })
	if v, ok := scrape(t, base2).value("lavavisor_health_check_failures_total", map[string]string{"service": "p1"}); !ok || v < 2 {
		t.Errorf("health check failures = %v (%v)", v, ok)
	}
}

func TestReloadChangesTheCheckAtOnce(t *testing.T) {
	h, base := healthHome(t)
	block, addr := h.healthService("p1", "*=ok", "")
	h.config(base + block)
	p := h.start("--metrics-addr", "127.0.0.1:0", "start")
	mbase := metricsURL(p)
	p.waitFor("p1 healthy", func() bool { return healthOf(t, h, "p1") == "healthy" })
	// The check now asks a port nothing listens on.
	h.config(base + strings.Replace(block, "http://"+addr+"/health", "http://"+freeAddr(t)+"/health", 1))
	p.signal(syscall.SIGHUP)
	p.waitLog("SIGHUP: config.yml applied")
	p.waitFor("/readyz 503", func() bool { code, _ := get(t, mbase+"/readyz"); return code == 503 })
	if n := h.count("p1", "start"); n != 1 {
		t.Errorf("a change of the check restarted the service (%d starts)", n)
	}
}

func TestPodHealthGatesItsUpgrade(t *testing.T) {
	rs := newReleaseServer(t)
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	addr := freeAddr(t)
	h.config("min-uptime: 300ms\nlink: none\n") // pod reads settings from it; its services are ignored
	t.Setenv("FAKE_RECORD", h.record("pod"))
	t.Setenv("FAKE_HEALTH_ADDR", addr)
	t.Setenv("FAKE_HEALTH", "6.2.6=fail,*=ok")
	p := launchPod(t, h, rs, addr)
	p.waitFor("pod healthy", func() bool { return healthOf(t, h, "lavap") == "healthy" })
	h.versions("6.2.5", "6.2.6")
	p.waitLog("rolled back")
	p.waitFor("back on 6.2.5", func() bool { return h.lastStartVersion("pod") == "6.2.5" && healthOf(t, h, "lavap") == "healthy" })
	if !strings.Contains(p.out.String(), "health: GET http://"+addr+"/health: 503") {
		t.Error("the pod's rollback does not name its check")
	}
}

func launchPod(t *testing.T, h *testHome, rs *releaseServer, addr string) *proc {
	t.Helper()
	p := startProc(t, lavavisorBin, "--directory", h.dir, "--node", "file://"+filepath.Join(h.dir, "versions.yml"),
		"--poll-interval", "100ms",
		"--download-url", rs.URL+"/v{version}/lavap-v{version}-{os}-{arch}", "--checksums-url", rs.URL+"/v{version}/sha256sum.txt",
		"pod", "--health-http", "http://"+addr+"/health", "--health-start-interval", "100ms", "--health-interval", "200ms",
		"--health-start-period", "2s", "--health-failures", "2",
		"--", "lavap", "rpcprovider", "pod.yml")
	return p
}

func TestServiceRestartWaitHealthy(t *testing.T) {
	h, base := healthHome(t)
	b1, _ := h.healthService("p1", "*=after=700ms", "")
	b2, addr2 := h.healthService("p2", "*=fail", "start-period: 1s")
	h.config(base + b1 + b2)
	p := h.start("start")
	p.waitFor("p1 healthy", func() bool { return healthOf(t, h, "p1") == "healthy" })
	code, out := h.ctl("service", "restart", "--wait-healthy", "p1")
	if code != 0 || !strings.Contains(out, "p1 restarted") || !strings.Contains(out, ", healthy") {
		t.Fatalf("restart --wait-healthy p1: exit %d\n%s", code, out)
	}
	if got := healthOf(t, h, "p1"); got != "healthy" {
		t.Errorf("p1 is %q right after restart --wait-healthy returned", got)
	}
	code, out = h.ctl("service", "restart", "--wait-healthy", "p2")
	want := fmt.Sprintf("not healthy within its start period (health: GET http://%s/health: 503)", addr2)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("restart --wait-healthy of a failing service: exit %d\n%s\nwant %q", code, out, want)
	}
}

// `--wait-healthy` waits for a process that may never be healthy: one that
// ends by itself in its start period, or is replaced by another command,
// answers at once instead of waiting for a start period that no longer ends.
func TestWaitHealthyProcessGone(t *testing.T) {
	h, base := healthHome(t)
	b1, _ := h.healthService("p1", "*=fail", "start-period: 1m")
	addr := freeAddr(t)
	check := fmt.Sprintf("health:\n  http: http://%s/health\n  start-interval: 100ms\n  start-period: 1m\n", addr)
	b2 := h.service("p2", check, "FAKE_HEALTH_ADDR="+addr, "FAKE_HEALTH=*=fail", "FAKE_EXIT=3", "FAKE_DELAY=300ms")
	h.config(base + b1 + b2)
	p := h.start("start")
	p.waitLog("service started")
	bounded := func(args ...string) (int, string) {
		t.Helper()
		c := startLavavisor(t, append([]string{"--directory", h.dir}, args...)...)
		select {
		case <-c.done:
			return c.code, c.out.String()
		case <-time.After(30 * time.Second): // the start period is 1 min
			c.cmd.Process.Kill()
			<-c.done
			return -1, "no answer in 30 s: " + c.out.String()
		}
	}
	code, out := bounded("service", "restart", "--wait-healthy", "p2")
	if code != 1 || !strings.Contains(out, "ended or was replaced before it was healthy") {
		t.Errorf("restart --wait-healthy of a service that exits: exit %d\n%s", code, out)
	}

	type answer struct {
		code int
		out  string
	}
	first := make(chan answer, 1)
	go func() {
		c, o := bounded("service", "restart", "--wait-healthy", "p1")
		first <- answer{c, o}
	}()
	p.waitFor("p1 restarted by the first command", func() bool { return h.count("p1", "start") >= 2 })
	if code, out := h.ctl("service", "restart", "p1"); code != 0 {
		t.Fatalf("second restart: exit %d\n%s", code, out)
	}
	a := <-first
	if a.code != 1 || !strings.Contains(a.out, "ended or was replaced before it was healthy") {
		t.Errorf("restart --wait-healthy of a process another restart replaced: exit %d\n%s", a.code, a.out)
	}
}

// Exec checks go through the one reaper: as PID 1, with exec checks every
// 100 ms, the services' own exit codes stay right and no check is left a
// zombie.
func TestExecChecksAsPID1KeepExitCodes(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Fatal("unshare is required (util-linux)")
	}
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	check := "health:\n  exec: [/bin/sh, -c, \"exit 0\"]\n  start-interval: 100ms\n  interval: 100ms\n  timeout: 1s\n  start-period: 1s\n"
	h.config("node: file:///x.yml\nservices:\n" +
		h.service("exits3", "restart: on-failure\n"+check, "FAKE_EXIT=3", "FAKE_DELAY=700ms") +
		h.service("keeps", check))
	p := startProc(t, "unshare", "--fork", "--pid", "--mount-proc", "--kill-child", lavavisorBin, "--directory", h.dir, "start")
	// exits3 is restarted by its policy (on-failure, exit 3): three rounds,
	// each with exec checks running beside it.
	p.waitFor("exits3 ended three times with exit code 3", func() bool { return strings.Count(p.out.String(), `exit="exit code 3"`) >= 3 })
	if strings.Contains(p.out.String(), `exit="exit code 0"`) {
		// Only the checks exit 0: a service reported so got a check's status.
		t.Error("a service exit was reported with a check's status")
	}
	if strings.Contains(p.out.String(), "service unhealthy") {
		t.Error("a check that exits 0 was reported as failing: its status went to the wrong waiter")
	}
	var pid1 int
	p.waitFor("lavavisor's pid", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.cmd.Process.Pid, p.cmd.Process.Pid))
		_, err := fmt.Sscan(string(b), &pid1)
		return err == nil
	})
	p.waitFor("keeps healthy", func() bool { return strings.Contains(p.out.String(), "service healthy") })
	p.waitFor("no zombie left", func() bool { return zombiesOf(pid1) == 0 })
	if err := syscall.Kill(pid1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}
