package main

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// init and check start nothing: an unreadable chain is their error, with its
// cause, never "starting on the linked release".
func TestInitAndCheckDoNotSayTheyStart(t *testing.T) {
	h := strictHome(t)
	for _, cmd := range []string{"init", "check"} {
		code, out := runLavavisor(t, "--directory", h.dir, "--node", "file://"+h.dir+"/nope.yml", cmd)
		if code != 1 || strings.Contains(out, "starting on") || strings.Contains(out, "poller") ||
			!strings.Contains(out, "cannot read the protocol versions from the chain") || !strings.Contains(out, "nope.yml") {
			t.Errorf("%s: code %d\n%s", cmd, code, out)
		}
	}
}

// Several config problems: one a line, no literal \n; check's and
// create-service's failures are theirs, not "lavavisor cannot run".
func TestConfigProblemsOneALine(t *testing.T) {
	h := newTestHome(t)
	h.config("stop_timeout: 5s\nrestart: sometimes\nservices: []\n")
	src := filepath.Join(h.dir, "provider.yml")
	os.WriteFile(src, []byte("x: 1\n"), 0o644)
	for _, tc := range []struct {
		args  []string
		label string
	}{
		{[]string{"check"}, "check failed"},
		{[]string{"start"}, "lavavisor cannot run"},
		{[]string{"create-service", "provider", src, "--from", "op", "--geolocation", "1"}, "create-service failed"},
	} {
		code, out := runLavavisor(t, append([]string{"--directory", h.dir}, tc.args...)...)
		if code != 1 || strings.Contains(out, `\n`) || !strings.Contains(out, tc.label) {
			t.Errorf("%v: code %d, want 1, %q, no literal \\n\n%s", tc.args, code, tc.label, out)
		}
		for _, want := range []string{"config.yml:1: stop_timeout: unknown key", "config.yml:2: restart: unknown restart policy"} {
			n := 0
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, want) {
					n++
					if strings.Contains(l, "restart policy") && strings.Contains(l, "stop_timeout") {
						t.Errorf("two problems on one line: %s", l)
					}
				}
			}
			if n != 1 {
				t.Errorf("%v: %q on %d lines, want 1\n%s", tc.args, want, n, out)
			}
		}
	}
}

// A release the server does not have: the error says fetch once, and
// "downloading release" is not logged when only the checksums were asked for.
func TestMissingReleaseMessages(t *testing.T) {
	h := initHome(t)
	h.versions("6.3.0", "6.3.0") // no such build on the server
	rs := newReleaseServer(t)
	code, out := runLavavisor(t, "--directory", h.dir, h.nodeFlag(),
		"--download-url", rs.URL+"/v{version}/lavap-v{version}-{os}-{arch}", "--checksums-url", rs.URL+"/v{version}/sha256sum.txt",
		"init", "--auto-download")
	if code != 1 || strings.Contains(out, "downloading release") || strings.Contains(out, "fetch v6.3.0: fetch") || !strings.Contains(out, "fetch lavap v6.3.0") {
		t.Errorf("code %d\n%s", code, out)
	}
}

// An unknown key in the versions file is named as a key, not a Go type.
func TestVersionsFileUnknownKeyMessage(t *testing.T) {
	h := strictHome(t)
	os.WriteFile(filepath.Join(h.dir, "versions.yml"), []byte("provider_min: 6.2.5\nprovider_target: 6.2.5\nconsumer_min: 6.2.5\nconsumer_target: 6.2.5\nbogus: 1\n"), 0o644)
	code, out := runLavavisor(t, "--directory", h.dir, "check")
	if code != 1 || strings.Contains(out, "struct") || !strings.Contains(out, "line 5: unknown key bogus") {
		t.Errorf("code %d\n%s", code, out)
	}
}

// A lavavisor that never answers: status says so by the socket's own name,
// not the temporary name it was bound under.
func TestStatusTimeoutNamesTheSocket(t *testing.T) {
	h := newTestHome(t)
	os.MkdirAll(h.root(), 0o755)
	tmp := filepath.Join(h.root(), ".tmp.sock")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Rename(tmp, h.socketPath()); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	code, out := runLavavisor(t, "--directory", h.dir, "status")
	if code != 1 || strings.Contains(out, ".tmp.sock") || !strings.Contains(out, "did not answer within 5s") || !strings.Contains(out, h.socketPath()) {
		t.Errorf("code %d\n%s", code, out)
	}
}

var prefixColumn = regexp.MustCompile(`^(\S+ *)\| `)

// The name column has one width from the first line on.
func TestLogPrefixColumnDoesNotWiden(t *testing.T) {
	h := newTestHome(t)
	h.place("6.2.5")
	h.link("6.2.5")
	h.config("node: file:///x.yml\nservices:\n" + h.service("a-rather-long-service-name", "restart: never", "FAKE_EXIT=0"))
	code, out := runLavavisor(t, "--directory", h.dir, "start")
	if code != 0 {
		t.Fatalf("code %d\n%s", code, out)
	}
	width := -1
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		m := prefixColumn.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if width == -1 {
			width = len(m[1])
		}
		if len(m[1]) != width {
			t.Fatalf("column width %d, then %d at %q\n%s", width, len(m[1]), l, out)
		}
	}
	if width != len("a-rather-long-service-name ") {
		t.Errorf("width %d\n%s", width, out)
	}
}

// A usage error of create-service is create-service's, not "lavavisor stopped".
func TestCreateServiceUsageErrorLabel(t *testing.T) {
	h := newTestHome(t)
	code, out := runLavavisor(t, "--directory", h.dir, "create-service", "provider", "p.yml", "--from", "op", "--geolocation", "1", "--name", "Bad_Name")
	if code != 2 || !strings.Contains(out, "create-service failed") || strings.Contains(out, "lavavisor stopped") {
		t.Errorf("code %d\n%s", code, out)
	}
}
