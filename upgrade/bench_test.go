package upgrade

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFetch90MB downloads, verifies and installs a 90 MB release from a
// local server, and times `curl -o` of the same file in the same run for
// comparison (goal: within 1.5x of curl).
func BenchmarkFetch90MB(b *testing.B) {
	const size = 90_000_000
	dir := b.TempDir()
	payload := filepath.Join(dir, "payload")
	f, err := os.Create(payload)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	sum := hex.EncodeToString(h.Sum(nil))

	mux := http.NewServeMux()
	mux.HandleFunc(assetPath("6.2.5"), func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeFile(w, r, payload)
	})
	mux.HandleFunc(sumsPath("6.2.5"), func(w http.ResponseWriter, r *http.Request) {
		w.Write(checksums("6.2.5", sum))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	log, _ := testLog()
	fetcher := &Fetcher{
		URL:             srv.URL + "/download/v{version}/lavap-v{version}-{os}-{arch}",
		Checksums:       srv.URL + "/download/v{version}/sha256sum.txt",
		RequireChecksum: true,
		Log:             log,
	}
	v := mustVersion(b, "6.2.5")
	releases := filepath.Join(dir, "releases")

	b.SetBytes(size)
	for b.Loop() {
		b.StopTimer()
		if err := os.RemoveAll(releases); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		m, err := fetcher.Fetch(context.Background(), &Store{Dir: releases, Log: log}, v)
		if err != nil || m.SHA256 != sum {
			b.Fatalf("Fetch: %v", err)
		}
	}
	fetchPerOp := b.Elapsed() / time.Duration(b.N)

	curl, err := exec.LookPath("curl")
	if err != nil {
		return
	}
	var curlTotal time.Duration
	out := filepath.Join(dir, "curl-out")
	for range b.N {
		os.Remove(out)
		start := time.Now()
		if o, err := exec.Command(curl, "-sS", "-f", "-o", out, srv.URL+assetPath("6.2.5")).CombinedOutput(); err != nil {
			b.Fatalf("curl: %v: %s", err, o)
		}
		curlTotal += time.Since(start)
	}
	curlPerOp := curlTotal / time.Duration(b.N)
	b.ReportMetric(float64(curlPerOp.Milliseconds()), "curl-ms/op")
	b.ReportMetric(float64(fetchPerOp.Milliseconds()), "fetch-ms/op")
	b.ReportMetric(float64(fetchPerOp)/float64(curlPerOp), "x-curl")
}
