package health

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets the test binary serve as a health endpoint in a process of
// its own, so that benchmarks measure the checking side's CPU alone.
func TestMain(m *testing.M) {
	if os.Getenv("LAVAVISOR_HEALTH_TEST_SERVER") == "1" {
		serveHealthEndpoints()
		return
	}
	os.Exit(m.Run())
}

// serveHealthEndpoints answers /health with 200 "ok" over http and https,
// prints both URLs, and ends when stdin closes.
func serveHealthEndpoints() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	plain := httptest.NewServer(h)
	tls := httptest.NewTLSServer(h)
	fmt.Printf("%s %s\n", plain.URL, tls.URL)
	io.Copy(io.Discard, os.Stdin)
	plain.Close()
	tls.Close()
}

// endpointProcess starts serveHealthEndpoints in a child and returns its
// http and https base URLs.
func endpointProcess(tb testing.TB) (string, string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LAVAVISOR_HEALTH_TEST_SERVER=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("endpoint process: %v", err)
	}
	urls := strings.Fields(line)
	if len(urls) != 2 {
		tb.Fatalf("endpoint process said %q", line)
	}
	return urls[0], urls[1]
}
