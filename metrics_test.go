package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var metricsAddrLog = regexp.MustCompile(`metrics_addr=(127\.0\.0\.1:\d+)`)

// metricsURL waits for the bound address in the log (started with port 0).
func metricsURL(p *proc) string {
	p.t.Helper()
	var addr string
	p.waitFor("metrics address in the log", func() bool {
		m := metricsAddrLog.FindStringSubmatch(p.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return "http://" + addr
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type families map[string]*dto.MetricFamily

func scrape(t *testing.T, base string) families {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return fams
}

// value of the sample of family name whose labels include labels; ok false
// when there is none.
func (f families) value(name string, labels map[string]string) (float64, bool) {
	fam, ok := f[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsHealthAndReadyOverHTTP(t *testing.T) {
	h := upgradeHome(t, nil, "")
	// A command service that crashes at once: restarts and the last exit
	// code show; readiness looks at the lavap services only.
	cfg := fmt.Sprintf("  - name: crashy\n    command: %s\n    args: [rpcprovider]\n    env: {FAKE_EXIT: \"3\"}\n", filepath.Join(fakeBuilds, "6.2.5", "lavap"))
	appendConfig(t, h, cfg)
	p := h.start("--metrics-addr", "127.0.0.1:0", "start")
	base := metricsURL(p)
	p.waitFor("both started", func() bool { return h.count("p1", "start") == 1 && h.count("p2", "start") == 1 })

	var f families
	p.waitFor("crashy restarted once", func() bool {
		f = scrape(t, base)
		v, _ := f.value("lavavisor_service_restarts_total", map[string]string{"service": "crashy"})
		return v >= 1
	})
	for _, name := range []string{"p1", "p2"} {
		if v, ok := f.value("lavavisor_service_up", map[string]string{"service": name}); !ok || v != 1 {
			t.Errorf("%s up = %v (%v), want 1", name, v, ok)
		}
		if v, ok := f.value("lavavisor_service_restarts_total", map[string]string{"service": name}); !ok || v != 0 {
			t.Errorf("%s restarts = %v (%v), want 0", name, v, ok)
		}
		if v, ok := f.value("lavavisor_service_dropped_log_lines_total", map[string]string{"service": name}); !ok || v != 0 {
			t.Errorf("%s dropped = %v (%v), want 0", name, v, ok)
		}
		if _, ok := f.value("lavavisor_service_last_exit_code", map[string]string{"service": name}); ok {
			t.Errorf("%s has a last exit code before any exit", name)
		}
	}
	if v, ok := f.value("lavavisor_service_last_exit_code", map[string]string{"service": "crashy"}); !ok || v != 3 {
		t.Errorf("crashy last exit code = %v (%v), want 3", v, ok)
	}
	if v, ok := f.value("lavavisor_chain_versions_info", map[string]string{
		"provider_min": "6.2.5", "provider_target": "6.2.5", "consumer_min": "6.2.5", "consumer_target": "6.2.5"}); !ok || v != 1 {
		t.Errorf("chain versions info missing: %v", f["lavavisor_chain_versions_info"])
	}
	if v, ok := f.value("lavavisor_release_info", map[string]string{"release": "v6.2.5"}); !ok || v != 1 {
		t.Errorf("release info missing: %v", f["lavavisor_release_info"])
	}
	if v, ok := f.value("lavavisor_chain_last_success_timestamp_seconds", nil); !ok || time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("last successful poll = %v (%v)", v, ok)
	}
	if v, ok := f.value("lavavisor_chain_poll_errors_total", nil); !ok || v != 0 {
		t.Errorf("poll errors = %v (%v), want 0", v, ok)
	}
	for _, name := range []string{"go_goroutines", "process_open_fds", "lavavisor_upgrade_duration_seconds"} {
		if _, ok := f[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz: %d %q", code, body)
	}

	// The chain's minimum rises above the running release, and no release
	// can be had (no auto-download): not ready, and the failed upgrade counts.
	h.versions("6.2.6", "6.2.6")
	var body string
	p.waitFor("/readyz 503", func() bool {
		var code int
		code, body = get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	want := "not ready: p1 runs v6.2.5, below the chain's provider minimum 6.2.6; p2 runs v6.2.5, below the chain's provider minimum 6.2.6\n"
	if body != want {
		t.Errorf("/readyz body %q, want %q", body, want)
	}
	p.waitFor("a failed upgrade counted", func() bool {
		v, _ := scrape(t, base).value("lavavisor_upgrades_total", map[string]string{"result": "failed"})
		return v >= 1
	})
	f = scrape(t, base)
	if _, ok := f.value("lavavisor_chain_versions_info", map[string]string{"provider_min": "6.2.6", "consumer_target": "6.2.6"}); !ok {
		t.Errorf("chain versions info not updated: %v", f["lavavisor_chain_versions_info"])
	}
	if v, _ := f.value("lavavisor_upgrades_total", map[string]string{"result": "success"}); v != 0 {
		t.Errorf("success = %v", v)
	}

	// A release placed by hand is taken at the next retry: ready again, and
	// the upgrade's duration is observed.
	placeLive(t, h, "6.2.6")
	p.waitFor("/readyz 200 after the upgrade", func() bool {
		code, _ := get(t, base+"/readyz")
		return code == 200
	})
	p.waitFor("upgrade counted", func() bool {
		f = scrape(t, base)
		v, _ := f.value("lavavisor_upgrades_total", map[string]string{"result": "success"})
		return v == 1
	})
	if v, _ := f.value("lavavisor_upgrade_duration_seconds", map[string]string{"result": "success"}); v != 1 {
		t.Errorf("upgrade duration observations = %v, want 1", v)
	}
	if _, ok := f.value("lavavisor_release_info", map[string]string{"release": "v6.2.6"}); !ok {
		t.Errorf("release info not v6.2.6: %v", f["lavavisor_release_info"])
	}

	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("/healthz still answers after exit")
	}
}

// appendConfig adds service blocks to the home's config.yml.
func appendConfig(t *testing.T, h *testHome, services string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.root(), "config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	h.config(string(b) + services)
}

// placeLive places a release into the home of a running lavavisor: built
// aside and renamed into upgrades/, so that no retry sees half a binary.
func placeLive(t *testing.T, h *testHome, version string) {
	t.Helper()
	aside := &testHome{t: t, dir: t.TempDir()}
	aside.place(version)
	if err := os.Rename(filepath.Join(aside.root(), "upgrades", "v"+version), filepath.Join(h.root(), "upgrades", "v"+version)); err != nil {
		t.Fatal(err)
	}
}

func TestMetricsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	h := upgradeHome(t, nil, "")
	addr := ln.Addr().String()
	code, out := runLavavisor(t, "--directory", h.dir, "--metrics-addr", addr, "start")
	if code != 1 || !strings.Contains(out, "--metrics-addr "+addr) || !strings.Contains(out, "address already in use") {
		t.Fatalf("code %d\n%s", code, out)
	}
	if h.count("p1", "start") != 0 || h.count("p2", "start") != 0 {
		t.Error("services started although the metrics address is taken")
	}
	if m, _ := filepath.Glob(filepath.Join(h.root(), "*sock")); len(m) != 0 {
		t.Errorf("socket left behind: %v", m)
	}
	// A malformed address is as clear.
	code, out = runLavavisor(t, "--directory", h.dir, "--metrics-addr", "nonsense", "start")
	if code != 1 || !strings.Contains(out, "--metrics-addr nonsense") {
		t.Fatalf("code %d\n%s", code, out)
	}
}
