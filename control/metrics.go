package control

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"
)

// metricsServer serves /metrics, /healthz and /readyz (SPEC §4) from a
// registry of its own: no global state, so tests and several sessions in one
// process do not share counters.
type metricsServer struct {
	ln  net.Listener
	srv *http.Server

	upgrades        *prometheus.CounterVec
	upgradeDuration *prometheus.HistogramVec
	pollErrors      prometheus.Counter
	lastPoll        prometheus.Gauge
}

// listenMetrics binds addr now, so that an address in use is a startup error
// rather than a run group that ends at once.
func listenMetrics(addr string, o *Plane) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	m := &metricsServer{
		ln: ln,
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lavavisor_upgrades_total",
			Help: "Upgrade attempts by result: success, rolled back, failed.",
		}, []string{"result"}),
		upgradeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lavavisor_upgrade_duration_seconds",
			Help:    "How long an upgrade took, from its start (fetch) to its result, by result.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800},
		}, []string{"result"}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lavavisor_chain_poll_errors_total",
			Help: "Chain polls that failed (unreachable node, invalid answer, wrong chain).",
		}),
		lastPoll: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lavavisor_chain_last_success_timestamp_seconds",
			Help: "Unix time of the last chain poll that answered; 0 before the first.",
		}),
	}
	for _, r := range []string{upgrade.ResultSuccess, upgrade.ResultRolledBack, upgrade.ResultFailed} {
		// Present at 0 from the start: a rate() over a series that appears
		// only with the first upgrade misses that upgrade.
		m.upgrades.WithLabelValues(r)
		m.upgradeDuration.WithLabelValues(r)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.upgrades, m.upgradeDuration, m.pollErrors, m.lastPoll,
		newSessionCollector(o),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Served by a run-group actor: when the group stops, so does this.
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := o.notReady(); reason != "" {
			http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return m, nil
}

func (m *metricsServer) addr() string { return m.ln.Addr().String() }

// serve blocks until stop.
func (m *metricsServer) serve() error {
	if err := m.srv.Serve(m.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}

// stop ends serve at once: a probe in flight is cut, as the process is
// going away anyway.
func (m *metricsServer) stop() { m.srv.Close() }

// close releases the address, also when serve never ran.
func (m *metricsServer) close() {
	m.srv.Close()
	m.ln.Close()
}

func (m *metricsServer) polled(err error) {
	if err != nil {
		m.pollErrors.Inc()
		return
	}
	m.lastPoll.Set(float64(time.Now().UnixNano()) / 1e9)
}

func (m *metricsServer) upgraded(rec upgrade.UpgradeRecord, took time.Duration) {
	m.upgrades.WithLabelValues(rec.Result).Inc()
	if took > 0 {
		m.upgradeDuration.WithLabelValues(rec.Result).Observe(took.Seconds())
	}
}

// sessionCollector reads the services, the chain and the linked release at
// each scrape, so the metrics never lag what `status` says.
type sessionCollector struct {
	o                                                                                   *Plane
	up, restarts, lastExit, dropped, fileDropped, chain, height, release, build, linkOK *prometheus.Desc
	healthy, healthFailures, pending, prefetch                                          *prometheus.Desc
}

func newSessionCollector(o *Plane) *sessionCollector {
	return &sessionCollector{
		o: o,
		up: prometheus.NewDesc("lavavisor_service_up",
			"1 when the service's process is running, else 0.", []string{"service"}, nil),
		restarts: prometheus.NewDesc("lavavisor_service_restarts_total",
			"Restarts of the service since LavaVisor started (crashes and upgrades).", []string{"service"}, nil),
		lastExit: prometheus.NewDesc("lavavisor_service_last_exit_code",
			"Exit code of the service's last process (128+N when killed by signal N); absent until one ended.", []string{"service"}, nil),
		dropped: prometheus.NewDesc("lavavisor_service_dropped_log_lines_total",
			"Log lines of the service dropped because the output was blocked.", []string{"service"}, nil),
		fileDropped: prometheus.NewDesc("lavavisor_service_log_file_dropped_lines_total",
			"Log lines of the service dropped from its log file (logs-dir) because the disk was blocked or failing.", []string{"service"}, nil),
		chain: prometheus.NewDesc("lavavisor_chain_versions_info",
			"The protocol versions the chain last published; absent until read.",
			[]string{"provider_min", "provider_target", "consumer_min", "consumer_target"}, nil),
		height: prometheus.NewDesc("lavavisor_chain_height",
			"Block height of the last chain answer (absent for a file source).", nil, nil),
		release: prometheus.NewDesc("lavavisor_release_info",
			"The lavap release `current` links to: what lavap services run.", []string{"release"}, nil),
		build: prometheus.NewDesc("lavavisor_build_info",
			"LavaVisor's own version.", []string{"version"}, nil),
		healthy: prometheus.NewDesc("lavavisor_service_healthy",
			"1 when the service's process is healthy (its health check passes, or it runs and has none), else 0.", []string{"service"}, nil),
		healthFailures: prometheus.NewDesc("lavavisor_health_check_failures_total",
			"Failed health checks of the service since LavaVisor started.", []string{"service"}, nil),
		pending: prometheus.NewDesc("lavavisor_upgrade_pending_not_before_timestamp_seconds",
			"Unix time before which the waiting upgrade to release `to` does not swap, waiting for its upgrade window or spread; absent when none waits.", []string{"to", "waiting_for"}, nil),
		prefetch: prometheus.NewDesc("lavavisor_proposal_prefetch",
			"1 for each version proposal in voting, labelled with the release it would need and the state of its pre-fetch (ready, fetching, failed, not_needed, not_followed); dropped when the proposal ends.",
			[]string{"proposal", "version", "state"}, nil),
		linkOK: prometheus.NewDesc("lavavisor_link_ok",
			"1 when the link names the running release, 0 when it cannot be written (retried every poll); link is current or system.", []string{"link"}, nil),
	}
}

func (c *sessionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.restarts, c.lastExit, c.dropped, c.fileDropped, c.chain, c.height, c.release, c.build, c.linkOK, c.healthy, c.healthFailures, c.pending, c.prefetch} {
		ch <- d
	}
}

func (c *sessionCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.o.sup.Status() {
		up := 0.0
		if st.PID != 0 && st.State == "running" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, st.Name)
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(st.Restarts), st.Name)
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped), st.Name)
		ch <- prometheus.MustNewConstMetric(c.fileDropped, prometheus.CounterValue, float64(st.FileDropped), st.Name)
		healthy := 0.0
		if st.Health == "healthy" {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy, st.Name)
		if st.HealthChecked {
			ch <- prometheus.MustNewConstMetric(c.healthFailures, prometheus.CounterValue, float64(st.HealthFailures), st.Name)
		}
		if st.LastExit != "" {
			ch <- prometheus.MustNewConstMetric(c.lastExit, prometheus.GaugeValue, float64(st.LastExitCode), st.Name)
		}
	}
	if snap, ok := c.o.chainSnapshot(); ok {
		v := snap.Versions
		ch <- prometheus.MustNewConstMetric(c.chain, prometheus.GaugeValue, 1,
			v.ProviderMin.String(), v.ProviderTarget.String(), v.ConsumerMin.String(), v.ConsumerTarget.String())
		if snap.Height > 0 {
			ch <- prometheus.MustNewConstMetric(c.height, prometheus.GaugeValue, float64(snap.Height))
		}
	}
	if tag, err := c.o.currentTag(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.release, prometheus.GaugeValue, 1, tag)
	}
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, c.o.version)
	if p := c.o.waiting(); p != nil {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(p.NotBefore.Unix()), p.To, p.WaitingFor)
	}
	if c.o.proposals != nil {
		ps, _ := c.o.proposals()
		for _, p := range ps {
			if !p.Ended {
				ch <- prometheus.MustNewConstMetric(c.prefetch, prometheus.GaugeValue, 1, strconv.FormatUint(p.ID, 10), p.Release, p.Prefetch)
			}
		}
	}
	if c.o.links != nil {
		l := c.o.links()
		ok := func(errText string) float64 {
			if errText == "" {
				return 1
			}
			return 0
		}
		ch <- prometheus.MustNewConstMetric(c.linkOK, prometheus.GaugeValue, ok(l.CurrentError), "current")
		if l.SystemLink != "" {
			ch <- prometheus.MustNewConstMetric(c.linkOK, prometheus.GaugeValue, ok(l.SystemLinkErr), "system")
		}
	}
}

// notReady says why the session is not ready, or "" when it is.
func (o *Plane) notReady() string {
	snap, known := o.chainSnapshot()
	var v *chain.Versions
	if known {
		v = &snap.Versions
	}
	reasons := readiness(o.sup.Status(), v, o.serviceRoles())
	if _, links := o.problems(); len(links) > 0 {
		if reasons != "" {
			links = append([]string{reasons}, links...)
		}
		return strings.Join(links, "; ")
	}
	return reasons
}

// readiness is "" when every lavap service runs on a release at or above the
// chain's minimum for its role (v nil: the chain is not known yet, and
// running is enough), else the reasons it is not. A session without lavap
// services is ready when every service runs.
func readiness(statuses []supervisor.Status, v *chain.Versions, roles map[string]config.Role) string {
	if len(statuses) == 0 {
		return "no service is running"
	}
	lavap := false
	for _, st := range statuses {
		lavap = lavap || st.Upgradable
	}
	var reasons []string
	for _, st := range statuses {
		if lavap && !st.Upgradable || st.State == "held" {
			// A service held stopped by the operator is not counted.
			continue
		}
		if st.PID == 0 || st.State != "running" {
			reasons = append(reasons, fmt.Sprintf("%s is %s", st.Name, st.State))
			continue
		}
		if st.Health == "starting" || st.Health == "unhealthy" {
			reason := fmt.Sprintf("%s is %s", st.Name, st.Health)
			if st.HealthError != "" {
				reason += " (" + st.HealthError + ")"
			}
			reasons = append(reasons, reason)
			continue
		}
		if !st.Upgradable || v == nil {
			continue
		}
		role := roles[st.Name]
		minimum := minimumFor(role, *v)
		running, err := chain.ParseTag(st.Release)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("%s runs release %q, which is not a version", st.Name, st.Release))
			continue
		}
		if running.Less(minimum) {
			reasons = append(reasons, fmt.Sprintf("%s runs %s, below the chain's %s minimum %s", st.Name, running.Tag(), roleName(role), minimum))
		}
	}
	return strings.Join(reasons, "; ")
}

// minimumFor is the chain's minimum for role; for an unknown role the higher
// of the two, so that readiness errs on the safe side.
func minimumFor(role config.Role, v chain.Versions) chain.Version {
	switch role {
	case config.RoleProvider:
		return v.ProviderMin
	case config.RoleConsumer:
		return v.ConsumerMin
	}
	if v.ProviderMin.Less(v.ConsumerMin) {
		return v.ConsumerMin
	}
	return v.ProviderMin
}

func roleName(r config.Role) string {
	if r == "" {
		return "highest"
	}
	return string(r)
}
