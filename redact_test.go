package main

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

var anyMetricsAddr = regexp.MustCompile(`metrics_addr"?[=:]"?(127\.0\.0\.1:\d+)`)

// Credentials in --node and the download URLs are never shown: not by the
// start banner (text and JSON), the chain's warnings, status, metrics, check
// or a config error.
func TestCredentialsAreRedactedEverywhere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a node that answers nothing useful
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	node := fmt.Sprintf("http://alice:s3cretpw@%s/?token=t0ken", ln.Addr())
	dl := "https://bob:dl-s3cret@127.0.0.1:1/v{version}/lavap?password=dl-pw"
	secrets := []string{"s3cretpw", "t0ken", "dl-s3cret", "dl-pw"}
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.config("link: none\nauto-download: true\nservices:\n" + h.service("p1", ""))
	var all strings.Builder
	for _, format := range []string{"text", "json"} {
		p := h.start("--log-format", format, "--node", node, "--download-url", dl, "--checksums-url", dl,
			"--metrics-addr", "127.0.0.1:0", "start")
		p.waitFor("p1 started", func() bool { return h.count("p1", "start") >= 1 })
		p.waitLog("lavavisor started")
		if !strings.Contains(p.out.String(), "alice:xxxxx@") {
			t.Errorf("%s banner does not show the redacted node:\n%s", format, p.out.String())
		}
		var addr string
		p.waitFor("metrics address in the log", func() bool {
			m := anyMetricsAddr.FindStringSubmatch(p.out.String())
			if m != nil {
				addr = "http://" + m[1]
			}
			return m != nil
		})
		_, status := runLavavisor(t, "--directory", h.dir, "status", "--json")
		_, metrics := get(t, addr+"/metrics")
		_, ready := get(t, addr+"/readyz")
		p.signal(syscall.SIGTERM)
		p.wait()
		all.WriteString(p.out.String() + status + metrics + ready)
	}
	h.versions("6.2.6", "6.2.6")
	_, check := runLavavisor(t, "--directory", h.dir, "--node", node, "--download-url", dl, "check")
	all.WriteString(check)
	_, check = runLavavisor(t, "--directory", h.dir, "--node", "file://"+h.dir+"/versions.yml", "--download-url", dl, "check")
	if !strings.Contains(check, "bob:xxxxx@") {
		t.Errorf("check does not show the redacted download URL:\n%s", check)
	}
	all.WriteString(check)
	for _, bad := range []string{"ftp://alice:s3cretpw@host", "http://alice:s3cretpw@host,", "http://alice:s3cretpw@%zz"} {
		code, out := runLavavisor(t, "--directory", h.dir, "--node", bad, "check")
		if code != 1 {
			t.Errorf("--node %q: code %d", bad, code)
		}
		all.WriteString(out)
	}
	code, out := runLavavisor(t, "--directory", h.dir, "--download-url", "https://bob:dl-s3cret@127.0.0.1:1/lavap", "check")
	if code != 1 {
		t.Errorf("bad download URL: code %d\n%s", code, out)
	}
	all.WriteString(out)
	for _, s := range secrets {
		if strings.Contains(all.String(), s) {
			t.Errorf("%q shown:\n%s", s, all.String())
		}
	}
}
