package config

import (
	"syscall"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		str  string
	}{
		{"512MiB", 512 << 20, "512MiB"},
		{"100MB", 100_000_000, "100000000"},
		{"1GiB", 1 << 30, "1GiB"},
		{"1024", 1024, "1KiB"},
		{"10KiB", 10 << 10, "10KiB"},
		{"10kib", 10 << 10, "10KiB"},
		{"3 MB", 3_000_000, "3000000"},
		{"7B", 7, "7"},
		{"2TiB", 2 << 40, "2TiB"},
	} {
		got, err := ParseByteSize(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseByteSize(%q) = %d (%s), %v; want %d (%s)", tc.in, got, got, err, tc.want, tc.str)
		}
	}
	for _, in := range []string{"", "lots", "1.5GiB", "-1", "10XB", "MiB", "99999999999TiB"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{
		"SIGINT": syscall.SIGINT, "INT": syscall.SIGINT, "sigterm": syscall.SIGTERM,
		"term": syscall.SIGTERM, "HUP": syscall.SIGHUP, "SIGQUIT": syscall.SIGQUIT,
		"usr1": syscall.SIGUSR1, "SigUsr2": syscall.SIGUSR2, "KILL": syscall.SIGKILL,
	} {
		got, err := ParseSignal(in)
		if err != nil || got.Std() != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "FOO", "SIGSTOP", "9", "SIGSEGV"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q): want an error", in)
		}
	}
	if s := Signal(syscall.SIGINT).String(); s != "SIGINT" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"15s": 15 * time.Second, "1m30s": 90 * time.Second, "0s": 0, "10m": 10 * time.Minute,
	} {
		got, err := ParseDuration(in)
		if err != nil || got.Std() != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"15":   `invalid duration "15": use a Go duration such as 15s`,
		"0":    `invalid duration "0": use a Go duration such as 15s`,
		"1.5":  `invalid duration "1.5": use a Go duration such as 15s`,
		"soon": `invalid duration "soon": use a Go duration such as 15s`,
		"-1s":  `negative duration "-1s"`,
	} {
		if _, err := ParseDuration(in); err == nil || err.Error() != want {
			t.Errorf("ParseDuration(%q): %v, want %s", in, err, want)
		}
	}
}

func TestRoleFromArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want Role
	}{
		{[]string{"rpcprovider", "p.yml"}, RoleProvider},
		{[]string{"rpcconsumer"}, RoleConsumer},
		{[]string{"test", "rpcprovider"}, ""},
		{nil, ""},
	} {
		if got := RoleFromArgs(tc.args); got != tc.want {
			t.Errorf("RoleFromArgs(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}
