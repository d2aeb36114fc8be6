package chain

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/chain/chaintest"
)

func TestGRPCQuery(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[useTLS]
		t.Run(name, func(t *testing.T) {
			f, pool := newFakeGRPC(t, useTLS)
			o := Options{GRPCAddr: f.addr, GRPCInsecure: !useTLS}
			if useTLS {
				o.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
			src := newTestSource(t, o)
			ctx := context.Background()
			snap, err := src.Query(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantVersions(t, snap.Versions, "provider 5.5.1..6.2.5, consumer 5.5.1..6.2.5")
			if snap.Height != 39 || snap.ChainID != "lava" || snap.Source != "grpc://"+f.addr {
				t.Fatalf("snapshot %+v", snap)
			}
			f.Set(func(s *chaintest.State) {
				s.Params = recordedValue(t, "abci_query_protocol_params_final.json")
				s.Height = 1036
			})
			snap, err = src.Query(ctx)
			if err != nil {
				t.Fatal(err)
			}
			wantVersions(t, snap.Versions, "provider 5.5.1..6.2.6, consumer 5.5.1..6.2.6")
			if snap.Height != 1036 {
				t.Fatalf("height %d", snap.Height)
			}
			if err := CheckChainID(ctx, src, "lava", nil); err != nil {
				t.Fatal(err)
			}
			err = CheckChainID(ctx, src, "lava-testnet-2", nil)
			if err == nil || err.Error() != `chain id mismatch: node reports "lava", config says "lava-testnet-2"` {
				t.Fatalf("mismatch: %v", err)
			}
		})
	}
}

// Without the height header (a proxy may strip it) the node service gives the height.
func TestGRPCHeightFromLatestBlock(t *testing.T) {
	f, _ := newFakeGRPC(t, false)
	f.setNoHeader(true)
	f.setHeight(1234)
	src := newTestSource(t, Options{GRPCAddr: f.addr, GRPCInsecure: true})
	snap, err := src.Query(context.Background())
	if err != nil || snap.Height != 1234 {
		t.Fatalf("snap %+v, err %v", snap, err)
	}
}

func TestGRPCSyncing(t *testing.T) {
	f, _ := newFakeGRPC(t, false)
	f.Set(func(s *chaintest.State) { s.CatchingUp = true })
	src := newTestSource(t, Options{GRPCAddr: f.addr, GRPCInsecure: true})
	snap, err := src.Query(context.Background())
	if err != nil || !snap.CatchingUp || snap.ChainID != "lava" {
		t.Fatalf("snap %+v, err %v", snap, err)
	}
}

func TestGRPCFaults(t *testing.T) {
	// query expects the fault to end the query. The request timeout is long:
	// a TLS handshake under -race on a busy machine took more than a short one,
	// and the certificate error became DeadlineExceeded. Only "hang" needs
	// the timeout to fire, and sets a short one.
	query := func(t *testing.T, o Options) error {
		t.Helper()
		if o.RequestTimeout == 0 {
			o.RequestTimeout = time.Minute
		}
		o.MaxResponseSize = 64 << 10
		src := newTestSource(t, o)
		start := time.Now()
		_, err := src.Query(context.Background())
		if err == nil {
			t.Fatal("no error")
		}
		if d := time.Since(start); o.RequestTimeout >= time.Minute && d >= o.RequestTimeout {
			t.Fatalf("ended by the request timeout after %s, not by the fault: %v", d, err)
		}
		return err
	}
	wantErr := func(t *testing.T, err error, want string) {
		t.Helper()
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("err = %v, want %q", err, want)
		}
	}
	t.Run("down", func(t *testing.T) {
		wantErr(t, query(t, Options{GRPCAddr: chaintest.ClosedAddr(t), GRPCInsecure: true}), "connection refused")
	})
	t.Run("hang", func(t *testing.T) {
		f, _ := newFakeGRPC(t, false)
		f.setMode(modeHang)
		wantErr(t, query(t, Options{GRPCAddr: f.addr, GRPCInsecure: true, RequestTimeout: 300 * time.Millisecond}), "DeadlineExceeded")
	})
	t.Run("huge", func(t *testing.T) {
		f, _ := newFakeGRPC(t, false)
		f.Set(func(s *chaintest.State) { s.Params = make([]byte, 1<<20) }) // 1 MiB
		wantErr(t, query(t, Options{GRPCAddr: f.addr, GRPCInsecure: true}), "ResourceExhausted")
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		f, _ := newFakeGRPC(t, true)
		wantErr(t, query(t, Options{GRPCAddr: f.addr}), "certificate")
	})
	// The handshake of a busy machine: the error is still the certificate's.
	t.Run("untrusted certificate, slow handshake", func(t *testing.T) {
		f, _ := newFakeGRPCSlowTLS(t, true, time.Second)
		wantErr(t, query(t, Options{GRPCAddr: f.addr}), "certificate")
	})
	t.Run("plain client, TLS server", func(t *testing.T) {
		f, _ := newFakeGRPC(t, true)
		wantErr(t, query(t, Options{GRPCAddr: f.addr, GRPCInsecure: true}), "Unavailable")
	})
	t.Run("garbage params", func(t *testing.T) {
		f, _ := newFakeGRPC(t, false)
		f.Set(func(s *chaintest.State) { s.Params = []byte("\x0a\x05hello") })
		wantErr(t, query(t, Options{GRPCAddr: f.addr, GRPCInsecure: true}), "decode QueryParamsResponse")
	})
	t.Run("hostile version", func(t *testing.T) {
		f, _ := newFakeGRPC(t, false)
		b, _ := (&QueryParamsResponse{Params: Params{Version: ProtocolVersion{
			ProviderTarget: "9.9.9; rm -rf /", ProviderMin: "5.5.1", ConsumerTarget: "6.2.5", ConsumerMin: "5.5.1",
		}}}).Marshal()
		f.Set(func(s *chaintest.State) { s.Params = b })
		wantErr(t, query(t, Options{GRPCAddr: f.addr, GRPCInsecure: true}), `provider_target: invalid version "9.9.9; rm -rf /"`)
	})
}
