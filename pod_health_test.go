package main

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lavavisor/lavavisor/config"
)

// podHealth parses pod's arguments through the real parser, with env as the
// environment, and returns the health check pod would run with.
func podHealth(t *testing.T, args []string, env map[string]string) (*config.Health, error) {
	t.Helper()
	cli, _, err := parseContainerArgs(t, append([]string{"pod"}, append(args, "--", "lavap", "rpcprovider", "provider.yml")...), env)
	if err != nil {
		return nil, err
	}
	return cli.Pod.health()
}

func TestPodHealthFlags(t *testing.T) {
	const url = "http://127.0.0.1:7776/metrics/ETH1/jsonrpc/health"
	def := config.DefaultHealth()
	with := func(f func(h *config.Health)) *config.Health {
		h := def
		f(&h)
		return &h
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want *config.Health
	}{
		{"none", nil, nil, nil},
		{"http with the defaults", []string{"--health-http", url}, nil, with(func(h *config.Health) { h.HTTP = url })},
		{"every flag", []string{
			"--health-http=https://10.0.0.5:7776/metrics/overall-health", "--health-insecure-tls",
			"--health-interval=10s", "--health-start-interval=250ms", "--health-timeout=3s",
			"--health-start-period=2m", "--health-failures=5", "--health-restart-after=5m",
		}, nil, &config.Health{
			HTTP: "https://10.0.0.5:7776/metrics/overall-health", InsecureTLS: true,
			Interval: 10 * time.Second, StartInterval: 250 * time.Millisecond, Timeout: 3 * time.Second,
			StartPeriod: 2 * time.Minute, Failures: 5, RestartAfter: 5 * time.Minute,
		}},
		{"every variable", nil, map[string]string{
			"LAVAVISOR_HEALTH_HTTP": "https://10.0.0.5:7776/metrics/overall-health", "LAVAVISOR_HEALTH_INSECURE_TLS": "true",
			"LAVAVISOR_HEALTH_INTERVAL": "10s", "LAVAVISOR_HEALTH_START_INTERVAL": "250ms", "LAVAVISOR_HEALTH_TIMEOUT": "3s",
			"LAVAVISOR_HEALTH_START_PERIOD": "2m", "LAVAVISOR_HEALTH_FAILURES": "5", "LAVAVISOR_HEALTH_RESTART_AFTER": "5m",
		}, &config.Health{
			HTTP: "https://10.0.0.5:7776/metrics/overall-health", InsecureTLS: true,
			Interval: 10 * time.Second, StartInterval: 250 * time.Millisecond, Timeout: 3 * time.Second,
			StartPeriod: 2 * time.Minute, Failures: 5, RestartAfter: 5 * time.Minute,
		}},
		{"tcp from the environment", nil, map[string]string{"LAVAVISOR_HEALTH_TCP": "127.0.0.1:2220"},
			with(func(h *config.Health) { h.TCP = "127.0.0.1:2220" })},
		{"a flag beats its variable", []string{"--health-interval", "7s"},
			map[string]string{"LAVAVISOR_HEALTH_TCP": "127.0.0.1:2220", "LAVAVISOR_HEALTH_INTERVAL": "1m"},
			with(func(h *config.Health) { h.TCP, h.Interval = "127.0.0.1:2220", 7*time.Second })},
		{"exec split like --cmd", []string{"--health-exec", `/bin/sh -c 'test -e "/tmp/x y"'`}, nil,
			with(func(h *config.Health) { h.Exec = []string{"/bin/sh", "-c", `test -e "/tmp/x y"`} })},
		{"exec from the environment", nil, map[string]string{"LAVAVISOR_HEALTH_EXEC": "/bin/true now"},
			with(func(h *config.Health) { h.Exec = []string{"/bin/true", "now"} })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podHealth(t, tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("health:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestPodHealthFlagErrors(t *testing.T) {
	const kinds = "want exactly one of --health-http, --health-tcp, --health-exec"
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // the whole message, or its start for the parser's own
	}{
		{"two kinds", []string{"--health-http", "http://127.0.0.1:7776/metrics/overall-health", "--health-tcp", "127.0.0.1:2220"}, nil,
			"--health-tcp: " + kinds},
		{"two kinds, one from the environment", []string{"--health-exec", "/bin/true"}, map[string]string{"LAVAVISOR_HEALTH_HTTP": "http://127.0.0.1:1/"},
			"--health-exec: " + kinds},
		{"no kind", []string{"--health-interval", "10s"}, nil, "--health-interval: " + kinds},
		{"bad scheme", []string{"--health-http", "ftp://127.0.0.1/health"}, nil,
			`--health-http: "ftp://127.0.0.1/health": scheme "ftp": want an http:// or https:// URL with a host, such as http://127.0.0.1:7776/metrics/ETH1/jsonrpc/health`},
		{"no port", []string{"--health-tcp", "127.0.0.1"}, nil, `--health-tcp: "127.0.0.1": want host:port, such as 127.0.0.1:2220`},
		{"relative exec", []string{"--health-exec", "check.sh eth"}, nil,
			`--health-exec: "check.sh": want an absolute path (a health check must not depend on a working directory)`},
		{"empty exec", []string{"--health-exec", ""}, nil,
			"--health-exec: empty: want the program's absolute path and its arguments, such as [/usr/local/bin/check-provider, eth]"},
		{"unterminated quote", []string{"--health-exec", "/bin/sh -c 'exit 0"}, nil, "--health-exec: unterminated single quote"},
		{"failures 0", []string{"--health-tcp", "127.0.0.1:2220", "--health-failures", "0"}, map[string]string{}, "--health-failures: 0: must be at least 1"},
		{"timeout 0", []string{"--health-tcp", "127.0.0.1:2220", "--health-timeout", "0s"}, nil, "--health-timeout: 0s: must be more than 0s"},
		{"negative restart-after", nil, map[string]string{"LAVAVISOR_HEALTH_TCP": "127.0.0.1:2220", "LAVAVISOR_HEALTH_RESTART_AFTER": "-1s"},
			"--health-restart-after: negative duration -1s"},
		{"insecure-tls over http", []string{"--health-http", "http://127.0.0.1:7776/metrics/overall-health", "--health-insecure-tls"}, nil,
			"--health-insecure-tls: only for an https:// URL in --health-http"},
		{"several", []string{"--health-tcp", "127.0.0.1", "--health-start-period", "0s", "--health-failures=-2"}, nil,
			"--health-tcp: \"127.0.0.1\": want host:port, such as 127.0.0.1:2220\n--health-start-period: 0s: must be more than 0s\n--health-failures: -2: must be at least 1"},
		// The parser's own refusals name the flag too.
		{"bare number", []string{"--health-tcp", "127.0.0.1:2220", "--health-interval", "15"}, nil, "--health-interval: "},
		{"failures not a number", nil, map[string]string{"LAVAVISOR_HEALTH_TCP": "127.0.0.1:2220", "LAVAVISOR_HEALTH_FAILURES": "three"}, "--health-failures: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := podHealth(t, tc.args, tc.env)
			if err == nil {
				t.Fatalf("accepted: %+v", h)
			}
			var ee *exitError
			if errors.As(err, &ee) {
				if ee.code != 2 {
					t.Errorf("exit code %d, want 2 (usage)", ee.code)
				}
				if err.Error() != tc.want {
					t.Errorf("error:\n%v\nwant:\n%s", err, tc.want)
				}
			} else if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("parse error %q, want it to start with %q", err, tc.want)
			}
		})
	}
}

// From the command line, a bad health flag stops pod before it starts anything,
// with exit code 2 and the reason.
func TestPodBadHealthFlagIsUsageError(t *testing.T) {
	h := newTestHome(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--health-tcp", "127.0.0.1"}, `--health-tcp: \"127.0.0.1\": want host:port`},
		{[]string{"--health-exec", "/no/such/check"}, `--health-exec: \"/no/such/check\" not found`},
		{[]string{"--health-http", "http://127.0.0.1:1/", "--health-interval", "5"}, "--health-interval: "},
	} {
		args := append([]string{"--directory", h.dir, "pod"}, tc.args...)
		args = append(args, "--restart", "never", "--", "sh", "-c", "echo started; exit 0")
		code, out := runLavavisor(t, args...)
		if code != 2 || !strings.Contains(out, tc.want) || strings.Contains(out, "started") {
			t.Errorf("%q: exit %d, want 2 with %q and nothing started:\n%s", tc.args, code, tc.want, out)
		}
	}
}
