package health

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user+system CPU so far: the endpoint runs in a
// child process, so it counts the checking side alone.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProbe: one check, client side, against an endpoint in another
// process, with the connection kept alive or not.
func BenchmarkProbe(b *testing.B) {
	plain, tls := endpointProcess(b)
	for _, c := range []struct {
		name      string
		spec      Spec
		keepAlive bool
	}{
		{"http-keepalive", Spec{HTTP: plain + "/health"}, true},
		{"http-close", Spec{HTTP: plain + "/health"}, false},
		{"https-keepalive", Spec{HTTP: tls + "/health", InsecureTLS: true}, true},
		{"https-close", Spec{HTTP: tls + "/health", InsecureTLS: true}, false},
		{"tcp", Spec{TCP: plain[len("http://"):]}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			c.spec.Timeout = 5 * time.Second
			p := newProber(c.spec, nil, c.keepAlive)
			defer p.close()
			ctx := context.Background()
			b.ReportAllocs()
			cpu := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := p.probe(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkMonitors20: 20 monitors checking one endpoint each "second" on
// a fake clock; one op is one round of 20 checks, so cpu-ns/op is the CPU
// LavaVisor spends per second checking 20 services every second.
func BenchmarkMonitors20(b *testing.B) {
	plain, tls := endpointProcess(b)
	for _, c := range []struct {
		name      string
		url       string
		keepAlive bool
	}{
		{"http-keepalive", plain, true},
		{"http-close", plain, false},
		{"https-keepalive", tls, true},
		{"https-close", tls, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			clk := newFakeClock()
			spec := Spec{HTTP: c.url + "/health", InsecureTLS: true, Interval: time.Second, Timeout: 5 * time.Second, Failures: 3}
			var ms []*Monitor
			for range 20 {
				m := newMonitor(spec, nil, clk, nil, c.keepAlive)
				ms = append(ms, m)
				defer m.Stop()
			}
			clk.waitTimers(b, 20) // first round done
			for _, m := range ms {
				if st := m.Status(); st.State != Healthy {
					b.Fatalf("monitor %+v", st)
				}
			}
			b.ReportAllocs()
			cpu := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				clk.Advance(time.Second)
				clk.waitTimers(b, 20)
			}
			b.StopTimer()
			perRound := float64(cpuTime()-cpu) / float64(b.N)
			b.ReportMetric(perRound, "cpu-ns/op")
			b.ReportMetric(perRound/1e9*100, "cpu-%@1Hz")
			for _, m := range ms {
				if st := m.Status(); st.Failures != 0 {
					b.Fatalf("monitor %+v", st)
				}
			}
		})
	}
}

// BenchmarkMonitors20RealClock: 20 monitors, Interval 1s, real clock; one
// op is one second of wall time, so cpu-ns/op is CPU per second (timers
// and wake-ups included). Run with -benchtime=10x.
func BenchmarkMonitors20RealClock(b *testing.B) {
	plain, _ := endpointProcess(b)
	spec := Spec{HTTP: plain + "/health", Interval: time.Second, Timeout: 5 * time.Second, Failures: 3}
	var ms []*Monitor
	for range 20 {
		m := NewMonitor(spec, nil, RealClock{}, nil)
		ms = append(ms, m)
		defer m.Stop()
	}
	for _, m := range ms {
		<-m.Healthy()
	}
	b.ReportAllocs()
	cpu := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		<-time.After(time.Second) // the op is a second of wall time
	}
	b.StopTimer()
	perSecond := float64(cpuTime()-cpu) / float64(b.N)
	b.ReportMetric(perSecond, "cpu-ns/op")
	b.ReportMetric(perSecond/1e9*100, "cpu-%")
	var failures uint64
	for _, m := range ms {
		failures += m.Status().Failures
	}
	if failures != 0 {
		b.Fatalf("%d failed checks", failures)
	}
}

// BenchmarkTimeToHealthy: from a monitor's start to Healthy, start
// interval 100ms, against an endpoint that answers 503 until N ms after
// the start. ms-late is the time past N: at most the start interval plus
// one check.
func BenchmarkTimeToHealthy(b *testing.B) {
	for _, after := range []time.Duration{0, 250 * time.Millisecond, time.Second} {
		b.Run(fmt.Sprintf("after=%s", after), func(b *testing.B) {
			var born atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if time.Since(time.Unix(0, born.Load())) < after {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			}))
			defer srv.Close()
			spec := Spec{HTTP: srv.URL + "/health", StartInterval: 100 * time.Millisecond, Interval: 5 * time.Second, Timeout: 2 * time.Second, StartPeriod: time.Minute, Failures: 3}
			var total, worst time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				born.Store(start.UnixNano())
				m := NewMonitor(spec, nil, RealClock{}, nil)
				<-m.Healthy()
				d := time.Since(start)
				m.Stop()
				total += d
				worst = max(worst, d)
			}
			b.StopTimer()
			b.ReportMetric(float64((total/time.Duration(b.N)).Microseconds())/1000, "ms-to-healthy")
			b.ReportMetric(float64((total/time.Duration(b.N)-after).Microseconds())/1000, "ms-late")
			b.ReportMetric(float64(worst.Microseconds())/1000, "ms-worst")
		})
	}
}

// TestTimeToHealthy bounds what BenchmarkTimeToHealthy measures: healthy
// within the start interval (plus slack for a loaded machine) of the
// endpoint turning healthy.
func TestTimeToHealthy(t *testing.T) {
	const after, startInterval = 300 * time.Millisecond, 100 * time.Millisecond
	start := time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if time.Since(start) < after {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	m := NewMonitor(Spec{HTTP: srv.URL, StartInterval: startInterval, Interval: time.Hour, Timeout: time.Second, StartPeriod: time.Minute, Failures: 1}, nil, RealClock{}, nil)
	defer m.Stop()
	select {
	case <-m.Healthy():
	case <-time.After(10 * time.Second):
		t.Fatal("never healthy")
	}
	if d := time.Since(start); d < after || d > after+startInterval+time.Second {
		t.Errorf("healthy after %s, want within [%s, %s]", d, after, after+startInterval+time.Second)
	}
	if st := m.Status(); st.Failures < 2 {
		t.Errorf("only %d failed checks before healthy with a %s start interval", st.Failures, startInterval)
	}
}
