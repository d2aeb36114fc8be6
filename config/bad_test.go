package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const nameRule = `want lowercase letters, digits and dashes, starting with a letter or digit, at most 63 characters (^[a-z0-9][a-z0-9-]{0,62}$)`
const nodeRule = `want tcp://, http:// or https:// with a host (several separated by commas), or a single file:///absolute/path`
const sizeRule = `want a whole number of bytes with an optional unit, such as 1024, 10KiB, 100MB or 512MiB`
const signalRule = `(want SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2 or SIGKILL)`
const healthURLRule = `want an http:// or https:// URL with a host, such as http://127.0.0.1:7776/metrics/ETH1/jsonrpc/health`
const windowRule = `want "HH:MM-HH:MM" in UTC on a 24-hour clock, such as "02:00-04:00" (may wrap midnight: "22:00-02:00"), or "" for any time`
const pinRule = `want X.Y.Z with no leading zeros and no "v", each part at most 10000`

// badConfigs pairs each testdata/<name>.bad.yml with the whole error it must
// give. {file} stands for the file as given to Load, {testdata} for the
// absolute path of testdata/.
var badConfigs = []struct{ name, want string }{
	// Keys.
	{"unknown-key", `{file}:2: foo: unknown key`},
	{"unknown-key-suggest", `{file}:1: stop_timeout: unknown key (did you mean stop-timeout?)`},
	{"unknown-service-key", `{file}:4: services[0].port: unknown key`},
	{"unknown-download-key", `{file}:3: download.sha: unknown key`},
	{"duplicate-key", `{file}:3: node: duplicate key (first at line 1)`},
	{"duplicate-env", `{file}:6: services[0].env.A: duplicate key (first at line 5)`},
	{"merge-key", "{file}:1: base: unknown key\n{file}:4: services[0]: merge keys (<<) are not supported: write the keys out"},

	// Types.
	{"rolling-wrong-type", `{file}:1: rolling: want true or false, got "yes please"`},
	{"prefetch-wrong-type", `{file}:1: prefetch: want auto, true or false, got "soon"`},
	{"args-wrong-type", `{file}:3: services[0].args: want a list, got "provider"`},
	{"keep-releases-wrong-type", `{file}:1: keep-releases: want an integer, got "many"`},
	{"download-wrong-type", `{file}:1: download: want a mapping of keys, got "https://example.com/lavap"`},
	{"services-wrong-type", `{file}:1: services: want a list of services, got "provider"`},
	{"service-wrong-type", `{file}:2: services[0]: want a mapping of keys, got "provider"`},
	{"env-wrong-type", `{file}:4: services[0].env: want a mapping of keys, got a list`},
	{"node-wrong-type", `{file}:1: node: want a string, got a list`},
	{"args-item-wrong-type", "{file}:3: services[0].args[1]: want a string, got a mapping\n{file}:3: services[0].args[2]: want a string, got nothing"},

	// Upgrade window and spread (SPEC §10).
	{"upgrade-window-text", `{file}:1: upgrade-window: invalid upgrade window "2am-4am": ` + windowRule},
	{"upgrade-window-hour", `{file}:1: upgrade-window: invalid upgrade window "24:00-02:00": ` + windowRule},
	{"upgrade-window-same", `{file}:1: upgrade-window: invalid upgrade window "02:00-02:00": it opens and closes at the same minute; for any time of day use ""`},
	{"upgrade-window-wrong-type", `{file}:1: upgrade-window: want a window such as "02:00-04:00", got a list`},
	{"upgrade-spread-too-long", `{file}:2: upgrade-spread: 10m0s: must be shorter than upgrade-window 23:55-00:05 (open 10m0s), or the last instances would never fit in it`},
	{"upgrade-spread-negative", `{file}:1: upgrade-spread: negative duration "-1m"`},
	{"upgrade-spread-bare", `{file}:1: upgrade-spread: invalid duration "10": use a Go duration such as 15s`},

	// Durations and sizes.
	{"bad-duration", `{file}:1: stop-timeout: invalid duration "15": use a Go duration such as 15s`},
	{"bad-duration-text", `{file}:1: min-uptime: invalid duration "soon": use a Go duration such as 15s`},
	{"negative-duration", `{file}:1: min-uptime: negative duration "-5s"`},
	{"negative-duration-service", `{file}:4: services[0].stop-timeout: negative duration "-1s"`},
	{"zero-request-timeout", `{file}:1: request-timeout: 0s: must be more than 0s`},
	{"max-size-bad", `{file}:2: download.max-size: invalid size "lots": ` + sizeRule},
	{"max-size-fraction", `{file}:2: download.max-size: invalid size "1.5GiB": ` + sizeRule},
	{"max-size-zero", `{file}:2: download.max-size: 0: must be more than 0`},
	{"log-max-size-small", `{file}:1: log-max-size: 512KiB: must be at least 1MiB (files are rotated in whole MiB)`},
	{"log-max-size-bad", `{file}:2: log-max-size: invalid size "huge": ` + sizeRule},
	{"log-max-files-zero", `{file}:1: log-max-files: 0: must be at least 1 (the rotated files kept)`},
	{"log-max-files-wrong-type", `{file}:1: log-max-files: want an integer, got a list`},
	{"logs-dir-file", `{file}:1: logs-dir: {testdata}/a-file.txt is not a directory`},
	{"keep-releases-zero", `{file}:1: keep-releases: 0: must be at least 1 (the current release is always kept)`},

	// Service names.
	{"duplicate-name", `{file}:4: services[1].name: duplicate name "provider-eth" (first at line 2)`},
	{"name-uppercase", `{file}:2: services[0].name: invalid name "Provider": ` + nameRule},
	{"name-underscore", `{file}:2: services[0].name: invalid name "provider_eth": ` + nameRule},
	{"name-empty", `{file}:2: services[0].name: invalid name "": ` + nameRule},
	{"name-missing", `{file}:2: services[0]: missing name: every service needs one`},

	// Service args and roles.
	{"args-empty", `{file}:3: services[0].args: empty: a lavap service needs its arguments, such as [rpcprovider, provider.yml, --from, my-key, --geolocation, "1"]`},
	{"args-missing", `{file}:2: services[0].args: empty: a lavap service needs its arguments, such as [rpcprovider, provider.yml, --from, my-key, --geolocation, "1"]`},
	{"args-lavap", `{file}:3: services[0].args[0]: "lavap": args are the arguments after the binary: drop the leading lavap`},
	{"args-lavap-path", `{file}:3: services[0].args[0]: "/usr/local/bin/lavap": args are the arguments after the binary: drop the leading lavap`},
	{"role-unknown", `{file}:4: services[0].role: unknown role "validator" (want provider or consumer)`},
	{"role-underivable", `{file}:2: services[0].role: cannot be derived from args[0] "tx": set role: provider or consumer`},
	{"role-contradicts", `{file}:4: services[0].role: consumer contradicts args[0] "rpcprovider", which runs a provider`},
	{"role-on-command", `{file}:4: services[0].role: set on a command service: command services get no version handling; remove role`},
	{"env-bad-name", `{file}:4: services[0].env.A=B: invalid variable name "A=B"`},

	// Enumerations.
	{"restart-unknown", `{file}:4: services[0].restart: unknown restart policy "sometimes" (want always, on-failure or never)`},
	{"restart-unknown-global", `{file}:1: restart: unknown restart policy "sometimes" (want always, on-failure or never)`},
	{"signal-unknown", `{file}:1: stop-signal: unknown signal "SIGFOO" ` + signalRule},
	{"signal-unknown-service", `{file}:4: services[0].stop-signal: unknown signal "STOP" ` + signalRule},
	{"upgrade-unknown", `{file}:1: upgrade: unknown upgrade mode "latest" (want target or min)`},

	// Link and pin.
	{"link-relative", `{file}:1: link: "bin/lavap": want auto, none or an absolute path`},
	{"link-directory", `{file}:1: link: / is a directory: want the path of the lavap link itself, such as /lavap`},
	{"pin-leading-zero", `{file}:1: pin: invalid version "06.2.5": ` + pinRule},
	{"pin-v-prefix", `{file}:1: pin: invalid version "v6.2.5": ` + pinRule},
	{"pin-short", `{file}:1: pin: invalid version "1.2": ` + pinRule},
	{"pin-too-big", `{file}:1: pin: invalid version "10001.0.0": ` + pinRule},

	// Paths, relative to the file's folder.
	{"dir-missing", `{file}:4: services[0].dir: "nope" does not exist (looked at {testdata}/nope)`},
	{"dir-file", `{file}:4: services[0].dir: "a-file.txt" is not a directory (looked at {testdata}/a-file.txt)`},
	{"command-missing", `{file}:3: services[0].command: "./missing-tool" not found (looked at {testdata}/missing-tool)`},
	{"command-not-executable", `{file}:3: services[0].command: "./a-file.txt" is not executable (looked at {testdata}/a-file.txt): chmod +x it`},
	{"command-directory", `{file}:3: services[0].command: "services/provider-eth" is a directory (looked at {testdata}/services/provider-eth): want an executable file`},
	{"command-not-on-path", `{file}:3: services[0].command: "no-such-program-for-lavavisor" not found on PATH`},

	// Chain access.
	{"chain-id-file-node", `{file}:1: chain-id: cannot be checked against a file:// source: remove chain-id or use a node`},
	{"node-bad-scheme", `{file}:1: node: entry "ftp://127.0.0.1:26657": ` + nodeRule},
	{"node-no-scheme", `{file}:1: node: entry "127.0.0.1:26657": ` + nodeRule},
	{"node-no-host", `{file}:1: node: entry "http://" has no host: ` + nodeRule},
	{"node-empty-entry", `{file}:1: node: empty entry in "tcp://127.0.0.1:26657,,tcp://127.0.0.1:26658": ` + nodeRule},
	{"node-mixed-file", `{file}:1: node: file:// source "file:///etc/lavavisor/versions.yml" cannot be mixed with other entries: ` + nodeRule},
	{"node-file-relative", `{file}:1: node: entry "file://versions.yml": want file:///absolute/path (three slashes)`},
	{"grpc-addr-url", `{file}:1: grpc-addr: "https://grpc.example.com": want host:port, such as grpc.example.com:443`},
	{"grpc-addr-no-port", `{file}:1: grpc-addr: "grpc.example.com": want host:port, such as grpc.example.com:443`},

	// Downloads.
	{"url-no-version", `{file}:2: download.url: "https://example.com/lavap-latest" has no {version}: every release needs its own URL`},
	{"url-bad-scheme", `{file}:2: download.url: "ftp://example.com/v{version}/lavap": scheme "ftp": want http, https or file`},
	{"url-unknown-placeholder", `{file}:2: download.url: "https://example.com/v{ver}/lavap": unknown placeholder {ver} (want {version}, {os} or {arch})`},
	{"checksums-bad-scheme", `{file}:2: download.checksums: "s3://bucket/v{version}/sha256sum.txt": scheme "s3": want http, https or file`},
	{"checksums-empty-required", `{file}:2: download.checksums: empty while download.require-checksum is true, so no download could ever be installed: set a checksums URL, or require-checksum: false`},

	// Health checks (SPEC §7).
	{"health-two-kinds", `{file}:4: services[0].health: want exactly one of http, tcp, exec`},
	{"health-no-kind", `{file}:4: services[0].health: want exactly one of http, tcp, exec`},
	{"health-url-not-url", `{file}:5: services[0].health.http: "127.0.0.1:7776/metrics/ETH1/jsonrpc/health": not a URL: ` + healthURLRule},
	{"health-url-scheme", `{file}:5: services[0].health.http: "ftp://127.0.0.1:7776/health": scheme "ftp": ` + healthURLRule},
	{"health-url-no-host", `{file}:5: services[0].health.http: "http:///health" has no host: ` + healthURLRule},
	{"health-url-empty", `{file}:5: services[0].health.http: empty: ` + healthURLRule},
	{"health-tcp-no-port", `{file}:5: services[0].health.tcp: "127.0.0.1": want host:port, such as 127.0.0.1:2220`},
	{"health-exec-relative", `{file}:5: services[0].health.exec[0]: "check-provider.sh": want an absolute path (a health check must not depend on a working directory)`},
	{"health-exec-empty", `{file}:5: services[0].health.exec: empty: want the program's absolute path and its arguments, such as [/usr/local/bin/check-provider, eth]`},
	{"health-exec-string", `{file}:5: services[0].health.exec: want a list, got "/usr/local/bin/check-provider eth"`},
	{"health-exec-missing", `{file}:5: services[0].health.exec[0]: "/no/such/check-provider" not found`},
	{"health-negative-duration", `{file}:6: services[0].health.interval: negative duration "-5s"`},
	{"health-zero-timeout", `{file}:6: services[0].health.timeout: 0s: must be more than 0s`},
	{"health-failures-zero", `{file}:6: services[0].health.failures: 0: must be at least 1`},
	{"health-insecure-http", `{file}:6: services[0].health.insecure-tls: only for an https:// URL in http`},
	{"health-unknown-key", "{file}:4: services[0].health: want exactly one of http, tcp, exec\n{file}:5: services[0].health.url: unknown key\n{file}:6: services[0].health.start_period: unknown key (did you mean start-period?)"},
	{"health-wrong-type", `{file}:4: services[0].health: want a mapping of keys, got "http://127.0.0.1:7776/metrics/overall-health"`},
	{"health-several", strings.Join([]string{
		`{file}:4: services[0].health: want exactly one of http, tcp, exec`,
		`{file}:7: services[0].health.start-interval: 0s: must be more than 0s`,
		`{file}:8: services[0].health.failures: -1: must be at least 1`,
		`{file}:12: services[1].health.tcp: "localhost": want host:port, such as 127.0.0.1:2220`,
	}, "\n")},

	// Whole files.
	{"no-services", `{file}:2: services: no services: add one to {file} (see lavavisor create-service)`},
	{"no-services-key", `{file}: services: no services: add one to {file} (see lavavisor create-service)`},
	{"empty", `{file}: empty config file`},
	{"comments-only", `{file}: empty config file`},
	{"tab-indented", `{file}:3: invalid YAML: found character that cannot start any token (a tab: YAML is indented with spaces only)`},
	{"unclosed", `{file}:2: invalid YAML: did not find expected ',' or ']'`},
	{"two-documents", `{file}:2: more than one YAML document: keep one`},
	{"top-level-list", `{file}:1: want a mapping of keys such as node: and services:, got a list`},
	{"several", strings.Join([]string{
		`{file}:1: node: entry "ftp://127.0.0.1:26657": ` + nodeRule,
		`{file}:2: stop-timeout: invalid duration "15": use a Go duration such as 15s`,
		`{file}:3: foo: unknown key`,
		`{file}:5: services[0].name: invalid name "Bad_Name": ` + nameRule,
		`{file}:6: services[0].args[0]: "lavap": args are the arguments after the binary: drop the leading lavap`,
		`{file}:8: services[1].restart: unknown restart policy "sometimes" (want always, on-failure or never)`,
		`{file}:10: services[2].name: duplicate name "ok" (first at line 7)`,
		`{file}:11: services[2].command: "./missing-tool" not found (looked at {testdata}/missing-tool)`,
	}, "\n")},
}

func TestBadConfigs(t *testing.T) {
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, tc := range badConfigs {
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", tc.name+".bad.yml")
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Load(path, Overrides{}, Options{})
			if err == nil {
				t.Fatalf("Load(%s) = nil error, want:\n%s", path, tc.want)
			}
			if c != nil {
				t.Errorf("Load(%s) returned a config along with its error", path)
			}
			want := strings.NewReplacer("{file}", path, "{testdata}", testdata).Replace(tc.want)
			if err.Error() != want {
				t.Errorf("Load(%s) error:\n%s\nwant:\n%s", path, err, want)
			}
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) != strings.Count(want, "\n")+1 {
				t.Errorf("error %T does not hold one Problem per line", err)
			}
			// The file, parsed from bytes, gives the same answer.
			if _, err := Parse(before, path, Overrides{}, Options{}); err == nil || err.Error() != want {
				t.Errorf("Parse gives %v", err)
			}
			after, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(before, after) {
				t.Errorf("loading changed %s", path)
			}
		})
	}
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".bad.yml"); !seen[name] {
			t.Errorf("%s has no row in badConfigs", f)
		}
	}
}
