package chain

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/chain/chaintest"
)

func lavaSpec(ms int64) []byte {
	b, _ := (&QueryGetSpecResponse{AverageBlockTimeMs: ms}).Marshal()
	return b
}

// The poll interval: the setting wins; else spec LAV1 (recorded: 1000 ms), then
// LAVA; a missing spec (the recorded "not found") falls back; else 15 s.
func TestPollIntervalRPC(t *testing.T) {
	ctx := context.Background()
	node := newFakeNode(t)
	src := newTestSource(t, Options{Nodes: node.TCP()})

	d, from := PollInterval(ctx, src, 3*time.Second)
	if d != 3*time.Second || from != "poll-interval setting" || node.hits.Load() != 0 {
		t.Fatalf("configured: %s from %q, %d requests", d, from, node.hits.Load())
	}
	d, from = PollInterval(ctx, src, 0)
	if d != time.Second || from != "spec LAV1 average_block_time" {
		t.Fatalf("LAV1: %s from %q", d, from)
	}
	node.Set(func(s *chaintest.State) { s.Specs = map[string][]byte{"LAVA": lavaSpec(15000)} })
	d, from = PollInterval(ctx, src, 0)
	if d != 15*time.Second || from != "spec LAVA average_block_time" {
		t.Fatalf("LAVA: %s from %q", d, from)
	}
	node.Set(func(s *chaintest.State) { s.Specs = map[string][]byte{} })
	d, from = PollInterval(ctx, src, 0)
	if d != DefaultPollInterval || from != "default (spec LAV1: not found; spec LAVA: not found)" {
		t.Fatalf("no spec: %s from %q", d, from)
	}
	// A block time no chain has is not believed.
	node.Set(func(s *chaintest.State) { s.Specs = map[string][]byte{"LAV1": lavaSpec(1), "LAVA": lavaSpec(7000)} })
	d, from = PollInterval(ctx, src, 0)
	if d != 7*time.Second || from != "spec LAVA average_block_time" {
		t.Fatalf("LAV1 at 1 ms: %s from %q", d, from)
	}
	node.setMode(mode500)
	d, from = PollInterval(ctx, src, 0)
	if d != DefaultPollInterval || !strings.Contains(from, "500 Internal Server Error") {
		t.Fatalf("node failing: %s from %q", d, from)
	}
}

func TestPollIntervalGRPC(t *testing.T) {
	ctx := context.Background()
	f, _ := newFakeGRPC(t, false)
	src := newTestSource(t, Options{GRPCAddr: f.addr, GRPCInsecure: true})
	d, from := PollInterval(ctx, src, 0)
	if d != time.Second || from != "spec LAV1 average_block_time" {
		t.Fatalf("LAV1: %s from %q", d, from)
	}
	f.Set(func(s *chaintest.State) { s.Specs = map[string][]byte{"LAVA": lavaSpec(15000)} })
	if d, from = PollInterval(ctx, src, 0); d != 15*time.Second || from != "spec LAVA average_block_time" {
		t.Fatalf("LAVA: %s from %q", d, from)
	}
	f.Set(func(s *chaintest.State) { s.Specs = nil })
	if d, from = PollInterval(ctx, src, 0); d != DefaultPollInterval || from != "default (spec LAV1: not found; spec LAVA: not found)" {
		t.Fatalf("no spec: %s from %q", d, from)
	}
}

func TestPollIntervalFile(t *testing.T) {
	src := newTestSource(t, Options{Nodes: "file://" + writeVersions(t, goodVersionsFile)})
	d, from := PollInterval(context.Background(), src, 0)
	if d != DefaultPollInterval || !strings.HasPrefix(from, "default (spec LAV1: a versions file has no spec") {
		t.Fatalf("%s from %q", d, from)
	}
}
