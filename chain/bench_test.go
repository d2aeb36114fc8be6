package chain

import (
	"context"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// BenchmarkDetectionLatency measures the time from a change of versions on the
// fake CometBFT node to its publication on a Subscribe channel, through the real
// RPC source (status + ABCI query through the SDK's client.Context) and poller.
// The interval is 50 ms to keep the run short (LAVAVISOR_BENCH_INTERVAL=1s for
// the production-like figure). The change is made at a random point of the poll
// cycle, so the expected latency is half an interval plus one poll's round trip;
// the sleep that places it is measurement, not synchronisation, and is not timed.
func BenchmarkDetectionLatency(b *testing.B) {
	interval := 50 * time.Millisecond
	if s := os.Getenv("LAVAVISOR_BENCH_INTERVAL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatal(err)
		}
		interval = d
	}
	node := newFakeNode(b)
	src, err := NewSource(Options{Nodes: node.TCP(), RequestTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	p := NewPoller(src, PollerOptions{Interval: interval})
	ch := p.Subscribe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	<-ch // the first answer

	targets := [2]string{"6.2.6", "6.2.7"}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A change lands at a random moment of the poll cycle, as governance does.
		b.StopTimer()
		time.Sleep(time.Duration(rand.Int64N(int64(interval))))
		target := targets[i%2]
		b.StartTimer()
		node.setVersions(target, "5.5.1", target, "5.5.1")
		node.setHeight(int64(100 + i))
		start := time.Now()
		for s := range ch {
			if s.Versions.ProviderTarget.String() == target {
				break
			}
		}
		total += time.Since(start)
	}
	b.StopTimer()
	avg := total / time.Duration(b.N)
	b.ReportMetric(float64(avg.Microseconds())/1000, "ms/detect")
	b.ReportMetric(float64(avg)/float64(interval), "intervals/detect")
}

// BenchmarkQueryRPC is one poll's round trip against the fake node: /status and
// the ABCI query, decoded and validated.
func BenchmarkQueryRPC(b *testing.B) {
	node := newFakeNode(b)
	src, err := NewSource(Options{Nodes: node.TCP()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		if _, err := src.Query(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
