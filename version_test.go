package main

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOf(t *testing.T) {
	installed := &debug.BuildInfo{Main: debug.Module{Path: "github.com/lavavisor/lavavisor", Version: "v1.2.3"}}
	checkout := &debug.BuildInfo{Main: debug.Module{Path: "github.com/lavavisor/lavavisor", Version: "(devel)"}}
	for _, tc := range []struct {
		stamped string
		bi      *debug.BuildInfo
		want    string
	}{
		{"1.4.0", installed, "1.4.0"}, // -ldflags "-X main.version=1.4.0" wins
		{"", installed, "v1.2.3"},     // go install github.com/lavavisor/lavavisor@v1.2.3
		{"", checkout, "dev"},         // go build in a checkout without VCS stamping
		{"", nil, "dev"},
	} {
		if got := versionOf(tc.stamped, tc.bi); got != tc.want {
			t.Errorf("versionOf(%q, %v) = %q, want %q", tc.stamped, tc.bi, got, tc.want)
		}
	}
	// The stamped test build says its -X version.
	if code, out := runLavavisor(t, "version"); code != 0 || strings.TrimSpace(out) != "0.1.0-test" {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestLogLevelHelpNamesTrace(t *testing.T) {
	code, out := runLavavisor(t, "--help")
	if code != 0 || !strings.Contains(out, "Log level: trace, debug, info, warn, error") {
		t.Errorf("code %d\n%s", code, out)
	}
}
