package config

import (
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"
)

func mustLoad(t *testing.T, path string, o Overrides, opts Options) *Config {
	t.Helper()
	c, err := Load(path, o, opts)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	return c
}

// globals is c without its services and bookkeeping, to compare with Default.
func globals(c Config) Config {
	c.Services, c.Path, c.src = nil, "", nil
	return c
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestMinimalGood(t *testing.T) {
	c := mustLoad(t, "testdata/minimal.good.yml", Overrides{}, Options{})
	if got, want := globals(*c), globals(Default()); !reflect.DeepEqual(got, want) {
		t.Errorf("globals:\n got %+v\nwant %+v", got, want)
	}
	if c.Path != abs(t, "testdata/minimal.good.yml") {
		t.Errorf("Path = %q", c.Path)
	}
	want := []Service{{
		Name:        "provider-eth",
		Args:        []string{"rpcprovider", "provider.yml", "--from", "my-key", "--geolocation", "1"},
		Role:        RoleProvider,
		StopTimeout: 15 * time.Second,
		StopSignal:  syscall.SIGINT,
		MinUptime:   10 * time.Second,
		Restart:     RestartAlways,
		Line:        2,
	}}
	if !reflect.DeepEqual(c.Services, want) {
		t.Errorf("services:\n got %+v\nwant %+v", c.Services, want)
	}
}

func TestNullsKeepDefaults(t *testing.T) {
	c := mustLoad(t, "testdata/nulls.good.yml", Overrides{}, Options{})
	if got, want := globals(*c), globals(Default()); !reflect.DeepEqual(got, want) {
		t.Errorf("globals:\n got %+v\nwant %+v", got, want)
	}
	s := c.Services[0]
	if s.Role != RoleConsumer || s.StopTimeout != 15*time.Second || s.Restart != RestartAlways {
		t.Errorf("service = %+v, want consumer with the global stop-timeout and restart", s)
	}
	if v, ok := s.Env["EMPTY"]; !ok || v != "" {
		t.Errorf("env = %#v, want EMPTY set to \"\"", s.Env)
	}
}

func TestFullGood(t *testing.T) {
	c := mustLoad(t, "testdata/full.good.yml", Overrides{}, Options{})
	testdata := abs(t, "testdata")
	want := Config{
		ChainID:         "lava-testnet-2",
		Node:            "https://rpc.example.com:443, tcp://127.0.0.1:26657",
		GRPCAddr:        "grpc.example.com:443",
		GRPCInsecure:    true,
		RequestTimeout:  Duration(5 * time.Second),
		MaxResponseSize: 8 << 20,
		PollInterval:    Duration(30 * time.Second),
		AutoDownload:    true,
		Prefetch:        "false",
		Download: Download{
			URL:             "https://mirror.example.com/v{version}/lavap-{os}-{arch}",
			Checksums:       "file:///srv/mirror/v{version}/sha256sum.txt",
			RequireChecksum: false,
			Timeout:         Duration(20 * time.Minute),
			ConnectTimeout:  Duration(10 * time.Second),
			MaxSize:         100_000_000,
		},
		ReleasesDir:     filepath.Join(testdata, "shared/releases"),
		KeepReleases:    5,
		Link:            "/usr/local/bin/lavap",
		StopTimeout:     Duration(20 * time.Second),
		StopSignal:      Signal(syscall.SIGTERM),
		MinUptime:       Duration(time.Minute),
		Restart:         RestartOnFailure,
		Upgrade:         UpgradeMin,
		Rolling:         false,
		Pin:             "6.2.5",
		BadReleaseRetry: Duration(30 * time.Minute),
		LogsDir:         filepath.Join(testdata, "logs"),
		LogMaxSize:      10_000_000,
		LogMaxFiles:     2,
	}
	if got := globals(*c); !reflect.DeepEqual(got, want) {
		t.Errorf("globals:\n got %+v\nwant %+v", got, want)
	}
	wantServices := []Service{
		{
			// Every per-service key set: the service's values win.
			Name:            "provider-eth",
			Args:            []string{"rpcprovider", "provider.yml", "--from", "op", "--geolocation", "1"},
			Role:            RoleProvider,
			Env:             map[string]string{"LAVA_X": "1"},
			Dir:             filepath.Join(testdata, "services/provider-eth"),
			StopTimeout:     30 * time.Second,
			StopSignal:      syscall.SIGINT,
			MinUptime:       0, // an explicit 0s is kept, not replaced by the global
			Restart:         RestartAlways,
			KeyringPassword: true,
			Line:            34,
		},
		{
			// No per-service key: the globals, and the role from args[0].
			Name:        "consumer",
			Args:        []string{"rpcconsumer", "consumer.yml"},
			Role:        RoleConsumer,
			StopTimeout: 20 * time.Second,
			StopSignal:  syscall.SIGTERM,
			MinUptime:   time.Minute,
			Restart:     RestartOnFailure,
			Line:        44,
		},
		{
			Name:        "sidecar",
			Command:     filepath.Join(testdata, "bin/exporter"),
			Args:        []string{"--port", "9300"},
			StopTimeout: 20 * time.Second,
			StopSignal:  syscall.SIGTERM,
			MinUptime:   time.Minute,
			Restart:     RestartOnFailure,
			Line:        46,
		},
	}
	if len(c.Services) != len(wantServices) {
		t.Fatalf("%d services, want %d", len(c.Services), len(wantServices))
	}
	for i := range wantServices {
		if !reflect.DeepEqual(c.Services[i], wantServices[i]) {
			t.Errorf("services[%d]:\n got %+v\nwant %+v", i, c.Services[i], wantServices[i])
		}
	}
	if s, ok := c.Service("sidecar"); !ok || s.Line != 46 {
		t.Errorf("Service(sidecar) = %+v, %v", s, ok)
	}
	if _, ok := c.Service("nope"); ok {
		t.Error("Service(nope) found")
	}
	if got := c.Nodes(); !reflect.DeepEqual(got, []string{"https://rpc.example.com:443", "tcp://127.0.0.1:26657"}) {
		t.Errorf("Nodes() = %q", got)
	}
	if c.UsesFileSource() || c.FileSource() != "" {
		t.Error("a tcp node is not a file source")
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate on a loaded config: %v", err)
	}
}

func TestFileSource(t *testing.T) {
	c := Default()
	c.Node = "file:///srv/versions.yml"
	if !c.UsesFileSource() || c.FileSource() != "/srv/versions.yml" {
		t.Errorf("UsesFileSource %v, FileSource %q", c.UsesFileSource(), c.FileSource())
	}
}

func ptr[T any](v T) *T { return &v }

func TestOverridesPrecedence(t *testing.T) {
	// full.good.yml sets stop-timeout 20s globally and 30s on provider-eth.
	const path = "testdata/full.good.yml"

	c := mustLoad(t, path, Overrides{}, Options{})
	if c.StopTimeout.Std() != 20*time.Second {
		t.Fatalf("file value not used: %v", c.StopTimeout)
	}

	o := Overrides{StopTimeout: ptr(5 * time.Second), Restart: ptr("never"), StopSignal: ptr("usr1")}
	c = mustLoad(t, path, o, Options{})
	p, _ := c.Service("provider-eth")
	consumer, _ := c.Service("consumer")
	if c.StopTimeout.Std() != 5*time.Second || c.Restart != RestartNever || c.StopSignal.Std() != syscall.SIGUSR1 {
		t.Errorf("flags did not override the file: %v %v %v", c.StopTimeout, c.Restart, c.StopSignal)
	}
	if p.StopTimeout != 30*time.Second || p.Restart != RestartAlways || p.StopSignal != syscall.SIGINT {
		t.Errorf("a service's own value must beat a global flag: %+v", p)
	}
	if consumer.StopTimeout != 5*time.Second || consumer.Restart != RestartNever || consumer.StopSignal != syscall.SIGUSR1 {
		t.Errorf("a service without its own value follows the global flag: %+v", consumer)
	}
	// Keys not overridden keep the file's value.
	if c.MinUptime.Std() != time.Minute || c.Node != "https://rpc.example.com:443, tcp://127.0.0.1:26657" {
		t.Errorf("a flag not given changed the file's value: %v %q", c.MinUptime, c.Node)
	}
}

func TestOverridesEveryField(t *testing.T) {
	o := Overrides{
		Node:            ptr("tcp://10.0.0.1:26657"),
		GRPCAddr:        ptr("127.0.0.1:9090"),
		ChainID:         ptr("lava"),
		DownloadURL:     ptr("file:///mirror/{version}/lavap"),
		ChecksumsURL:    ptr("file:///mirror/{version}/sums"),
		ReleasesDir:     ptr("rel"),
		Link:            ptr("none"),
		Pin:             ptr("6.2.5"),
		GRPCInsecure:    ptr(true),
		AutoDownload:    ptr(true),
		RequireChecksum: ptr(false),
		Rolling:         ptr(false),
		RequestTimeout:  ptr(3 * time.Second),
		PollInterval:    ptr(7 * time.Second),
		StopTimeout:     ptr(4 * time.Second),
		MinUptime:       ptr(2 * time.Second),
		StopSignal:      ptr("TERM"),
		Restart:         ptr("on-failure"),
		Upgrade:         ptr("min"),
	}
	c := mustLoad(t, "testdata/minimal.good.yml", o, Options{})
	want := Default()
	want.Node = "tcp://10.0.0.1:26657"
	want.GRPCAddr = "127.0.0.1:9090"
	want.ChainID = "lava"
	want.Download.URL = "file:///mirror/{version}/lavap"
	want.Download.Checksums = "file:///mirror/{version}/sums"
	want.ReleasesDir = abs(t, "rel") // relative to where the flag was typed
	want.Link = LinkNone
	want.Pin = "6.2.5"
	want.GRPCInsecure = true
	want.AutoDownload = true
	want.Download.RequireChecksum = false
	want.Rolling = false
	want.RequestTimeout = Duration(3 * time.Second)
	want.PollInterval = Duration(7 * time.Second)
	want.StopTimeout = Duration(4 * time.Second)
	want.MinUptime = Duration(2 * time.Second)
	want.StopSignal = Signal(syscall.SIGTERM)
	want.Restart = RestartOnFailure
	want.Upgrade = UpgradeMin
	if got := globals(*c); !reflect.DeepEqual(got, globals(want)) {
		t.Errorf("globals:\n got %+v\nwant %+v", got, globals(want))
	}
	s := c.Services[0]
	if s.StopTimeout != 4*time.Second || s.MinUptime != 2*time.Second || s.StopSignal != syscall.SIGTERM || s.Restart != RestartOnFailure {
		t.Errorf("service did not follow the overridden globals: %+v", s)
	}
}

func TestOverrideErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Overrides
		want string
	}{
		// What LAVAVISOR_STOP_SIGNAL=FOO gives through kong's env binding.
		{"stop-signal", Overrides{StopSignal: ptr("FOO")}, `--stop-signal: unknown signal "FOO" ` + signalRule},
		{"restart", Overrides{Restart: ptr("sometimes")}, `--restart: unknown restart policy "sometimes" (want always, on-failure or never)`},
		{"upgrade", Overrides{Upgrade: ptr("latest")}, `--upgrade: unknown upgrade mode "latest" (want target or min)`},
		{"link", Overrides{Link: ptr("bin/lavap")}, `--link: "bin/lavap": want auto, none or an absolute path`},
		{"pin", Overrides{Pin: ptr("v6.2.5")}, `--pin: invalid version "v6.2.5": ` + pinRule},
		{"node", Overrides{Node: ptr("localhost:26657")}, `--node: entry "localhost:26657": ` + nodeRule},
		{"poll-interval", Overrides{PollInterval: ptr(-time.Second)}, `--poll-interval: negative duration -1s`},
		{"request-timeout", Overrides{RequestTimeout: ptr(time.Duration(0))}, `--request-timeout: 0s: must be more than 0s`},
		{"checksums", Overrides{ChecksumsURL: ptr("")}, `--checksums-url: empty while download.require-checksum is true, so no download could ever be installed: set a checksums URL, or require-checksum: false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load("testdata/minimal.good.yml", tc.o, Options{})
			if err == nil || err.Error() != tc.want {
				t.Errorf("error:\n%v\nwant:\n%s", err, tc.want)
			}
			if c != nil {
				t.Error("a config came back with the error")
			}
		})
	}
}

func TestFlagProblemsComeFirst(t *testing.T) {
	_, err := Load("testdata/bad-duration.bad.yml", Overrides{StopSignal: ptr("nope")}, Options{})
	want := `--stop-signal: unknown signal "nope" ` + signalRule + "\n" +
		`testdata/bad-duration.bad.yml:1: stop-timeout: invalid duration "15": use a Go duration such as 15s`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestHealthGood(t *testing.T) {
	c := mustLoad(t, "testdata/health.good.yml", Overrides{}, Options{})
	want := []*Health{
		{
			HTTP:          "https://127.0.0.1:7776/metrics/ETH1/jsonrpc/health",
			InsecureTLS:   true,
			Interval:      10 * time.Second,
			StartInterval: 500 * time.Millisecond,
			Timeout:       3 * time.Second,
			StartPeriod:   2 * time.Minute,
			Failures:      5,
			RestartAfter:  5 * time.Minute,
			Line:          6,
		},
		{TCP: "127.0.0.1:2220", Line: 17},
		// A null interval keeps the default, as everywhere.
		{Exec: []string{"/bin/sh", "-c", "exit 0"}, Line: 21},
		nil,
	}
	for i, def := 1, DefaultHealth(); i < 3; i++ {
		h := *want[i]
		h.Interval, h.StartInterval, h.Timeout = def.Interval, def.StartInterval, def.Timeout
		h.StartPeriod, h.Failures, h.RestartAfter = def.StartPeriod, def.Failures, def.RestartAfter
		want[i] = &h
	}
	if len(c.Services) != len(want) {
		t.Fatalf("%d services, want %d", len(c.Services), len(want))
	}
	for i, w := range want {
		if got := c.Services[i].Health; !reflect.DeepEqual(got, w) {
			t.Errorf("services[%d].health:\n got %+v\nwant %+v", i, got, w)
		}
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate on a loaded config: %v", err)
	}
}

func TestDefaultHealth(t *testing.T) {
	// SPEC §7's values.
	want := Health{Interval: 5 * time.Second, StartInterval: time.Second, Timeout: 2 * time.Second, StartPeriod: 90 * time.Second, Failures: 3}
	if got := DefaultHealth(); !reflect.DeepEqual(got, want) {
		t.Errorf("DefaultHealth() = %+v, want %+v", got, want)
	}
}

// A health check built in code is held to the rules of the file.
func TestValidateHealthInCode(t *testing.T) {
	c := Default()
	h := DefaultHealth()
	h.HTTP, h.TCP, h.Timeout = "http://127.0.0.1:7776/metrics/overall-health", "127.0.0.1:2220", 0
	c.Services = []Service{c.Effective(Service{Name: "consumer", Args: []string{"rpcconsumer", "c.yml"}, Health: &h})}
	want := "services[0].health: want exactly one of http, tcp, exec\nservices[0].health.timeout: 0s: must be more than 0s"
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate:\n%v\nwant:\n%s", err, want)
	}
	h.TCP, h.Timeout = "", time.Second
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of a good check: %v", err)
	}
}
