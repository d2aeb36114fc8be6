package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/control"
)

// statusJSON runs `status --json` and decodes it strictly, so that a key
// added, renamed or missing fails the test.
func statusJSON(t *testing.T, dir string) (control.Report, string) {
	t.Helper()
	code, out := runLavavisor(t, "--directory", dir, "status", "--json")
	if code != 0 {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	assertKeys(t, []byte(out))
	var rep control.Report
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("status --json does not decode: %v\n%s", err, out)
	}
	return rep, out
}

// assertKeys checks the exact key sets of SPEC §4's JSON.
func assertKeys(t *testing.T, b []byte) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, b)
	}
	keysOf := func(raw json.RawMessage) []string {
		var o map[string]any
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatalf("not an object: %s", raw)
		}
		var ks []string
		for k := range o {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	want := func(what string, got []string, w ...string) {
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Errorf("%s keys %v, want %v", what, got, w)
		}
	}
	top := []string{"services", "chain", "last_upgrade", "proposals"}
	for _, optional := range []string{"problems", "pending", "proposals_error"} {
		if _, ok := m[optional]; ok {
			top = append(top, optional)
		}
	}
	want("top-level", keysOf(b), top...)
	if _, ok := m["pending"]; ok {
		want("pending", keysOf(m["pending"]), "to", "reason", "not_before", "waiting_for")
	}
	var props []json.RawMessage
	json.Unmarshal(m["proposals"], &props)
	for _, p := range props {
		want("proposal", keysOf(p), "id", "provider_target", "provider_min", "consumer_target", "consumer_min", "voting_end", "release", "prefetch", "reason")
	}
	var svcs []json.RawMessage
	json.Unmarshal(m["services"], &svcs)
	for _, s := range svcs {
		want("service", keysOf(s), "name", "state", "pid", "release", "uptime_s", "restarts", "last_exit", "health")
	}
	if string(m["chain"]) != "null" {
		want("chain", keysOf(m["chain"]), "provider_min", "provider_target", "consumer_min", "consumer_target", "height")
	}
	if string(m["last_upgrade"]) != "null" {
		want("last_upgrade", keysOf(m["last_upgrade"]), "from", "to", "result", "at")
	}
}

func (h *testHome) socketPath() string { return filepath.Join(h.root(), "lavavisor.sock") }

func TestStatusWhileRunningAndAfterStop(t *testing.T) {
	h := upgradeHome(t, nil, "")
	p := h.start("start")
	p.waitFor("both started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("polling the chain")

	fi, err := os.Lstat(h.socketPath())
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v %v", fi, err)
	}
	rep, _ := statusJSON(t, h.dir)
	if len(rep.Services) != 2 {
		t.Fatalf("services %+v", rep.Services)
	}
	for i, name := range []string{"p1", "p2"} {
		s := rep.Services[i]
		if s.Name != name || s.State != "running" || s.PID != h.pids(name)[0] || s.Release != "v6.2.5" ||
			s.Restarts != 0 || s.LastExit != "" || s.UptimeS <= 0 || s.UptimeS > 60 {
			t.Errorf("service %d: %+v, want %s running pid %d on v6.2.5", i, s, name, h.pids(name)[0])
		}
	}
	if c := rep.Chain; c == nil || c.ProviderMin != "6.2.5" || c.ProviderTarget != "6.2.5" || c.ConsumerMin != "6.2.5" || c.ConsumerTarget != "6.2.5" || c.Height != 0 {
		t.Errorf("chain %+v", rep.Chain)
	}
	if rep.LastUpgrade != nil {
		t.Errorf("last_upgrade %+v, want null", rep.LastUpgrade)
	}

	code, out := runLavavisor(t, "--directory", h.dir, "status")
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	for _, want := range []string{"SERVICE", "LAST EXIT", "p1", "p2", "running", "v6.2.5", "chain: provider min 6.2.5 target 6.2.5", "last upgrade: none"} {
		if !strings.Contains(out, want) {
			t.Errorf("status text lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, " "+itoa(h.pids("p1")[0])+" ") {
		t.Errorf("status text lacks p1's pid:\n%s", out)
	}

	// A second instance is refused by the lock and leaves the socket alone.
	if code, out := runLavavisor(t, "--directory", h.dir, "start"); code != 1 || !strings.Contains(out, "in use") {
		t.Fatalf("second start: %d\n%s", code, out)
	}
	if rep, _ := statusJSON(t, h.dir); rep.Services[0].PID != h.pids("p1")[0] {
		t.Errorf("after a refused second start: %+v", rep.Services)
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Lstat(h.socketPath()); !os.IsNotExist(err) {
		t.Errorf("socket left after a clean stop: %v", err)
	}
	code, out = runLavavisor(t, "--directory", h.dir, "status")
	if code != 1 || !strings.Contains(out, "no lavavisor is running for "+h.root()+" (no socket at "+h.socketPath()+")") {
		t.Errorf("status after stop: %d\n%s", code, out)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestStatusNoInstance(t *testing.T) {
	dir := t.TempDir()
	code, out := runLavavisor(t, "--directory", dir, "status", "--json")
	want := "no lavavisor is running for " + filepath.Join(dir, ".lavavisor") + " (no socket at " + filepath.Join(dir, ".lavavisor", "lavavisor.sock") + ")"
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("code %d, output %q; want exit 1 and %q", code, out, want)
	}
	if _, err := os.Stat(filepath.Join(dir, ".lavavisor")); !os.IsNotExist(err) {
		t.Errorf("status created the home: %v", err)
	}
}

func TestStatusStaleSocketIsReplaced(t *testing.T) {
	h := upgradeHome(t, nil, "")
	p := h.start("start")
	p.waitFor("started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })
	p.waitLog("lavavisor started")
	p.signal(syscall.SIGKILL)
	p.wait()
	if _, err := os.Lstat(h.socketPath()); err != nil {
		t.Fatalf("a killed instance's socket should be left behind: %v", err)
	}
	code, out := runLavavisor(t, "--directory", h.dir, "status")
	if code != 1 || !strings.Contains(out, "no lavavisor is running for") || !strings.Contains(out, "is stale") {
		t.Errorf("status on a stale socket: %d\n%s", code, out)
	}
	// The killed instance's children die with it (parent-death signal).
	for _, name := range []string{"p1", "p2"} {
		pid := h.pids(name)[0]
		p.waitFor2(t, name+" gone", func() bool { return !alive(pid) })
	}

	p = h.start("start")
	p.waitFor("restarted", func() bool { return h.count("p1", "start") == 2 && h.count("p2", "start") == 2 })
	p.waitLog("lavavisor started")
	rep, _ := statusJSON(t, h.dir)
	if rep.Services[0].PID != h.pids("p1")[1] || rep.Services[1].PID != h.pids("p2")[1] {
		t.Errorf("status after restart %+v, want pids %v %v", rep.Services, h.pids("p1"), h.pids("p2"))
	}
	p.signal(syscall.SIGTERM)
	p.wait()
}

func TestStatusSocketPathTooLong(t *testing.T) {
	h := &testHome{t: t, dir: filepath.Join(t.TempDir(), strings.Repeat("d", 100))}
	h.place("6.2.5")
	h.link("6.2.5")
	h.versions("6.2.5", "6.2.5")
	h.config("node: file://" + h.dir + "/versions.yml\nlink: none\nservices:\n" + h.service("p1", ""))
	sock := h.socketPath()
	for _, args := range [][]string{{"start"}, {"status"}} {
		code, out := runLavavisor(t, append([]string{"--directory", h.dir}, args...)...)
		if code != 1 || !strings.Contains(out, "control socket path "+sock) || !strings.Contains(out, "over the 107-byte limit") ||
			!strings.Contains(out, "use a shorter --directory") {
			t.Errorf("%v: code %d\n%s", args, code, out)
		}
	}
	if h.count("p1", "start") != 0 {
		t.Error("a service started although the socket could not be made")
	}
	if _, err := os.Lstat(filepath.Join(h.root(), ".tmp.sock")); !os.IsNotExist(err) {
		t.Errorf("temporary socket left: %v", err)
	}
}

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := control.Report{
		Services: []control.ServiceReport{
			{Name: "provider-eth", State: "running", PID: 42, Release: "v6.2.6", UptimeS: 3725.5, Restarts: 1, LastExit: "exit code 0", Health: "healthy"},
			{Name: "sidecar", State: "backoff", Restarts: 3, LastExit: "killed by SIGKILL"},
		},
		Chain:       &control.ChainReport{ProviderMin: "6.2.5", ProviderTarget: "6.2.6", ConsumerMin: "6.2.5", ConsumerTarget: "6.2.6", Height: 1234},
		LastUpgrade: &control.UpgradeReport{From: "6.2.5", To: "6.2.6", Result: "success", At: now.Add(-time.Hour)},
	}
	var b bytes.Buffer
	printStatus(&b, rep, now)
	want := []string{
		"SERVICE       STATE    HEALTH   PID  RELEASE  UPTIME  RESTARTS  LAST EXIT\n",
		"provider-eth  running  healthy  42   v6.2.6   1h2m5s  1         exit code 0\n",
		"sidecar       backoff  -        -    -        -       3         killed by SIGKILL\n",
		"chain: provider min 6.2.5 target 6.2.6, consumer min 6.2.5 target 6.2.6, height 1234",
		"last upgrade: 6.2.5 -> 6.2.6, success, 1h0m0s ago",
	}
	for _, w := range want {
		if !strings.Contains(b.String(), w) {
			t.Errorf("missing %q in:\n%s", w, b.String())
		}
	}
	b.Reset()
	printStatus(&b, control.Report{}, now)
	if !strings.Contains(b.String(), "chain: not read yet") || !strings.Contains(b.String(), "last upgrade: none") {
		t.Errorf("empty report:\n%s", b.String())
	}
}
