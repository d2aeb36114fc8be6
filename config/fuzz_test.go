package config

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// fuzzPath names the fuzzed file: under testdata/, so that the relative paths of
// the seeds (bin/exporter, services/provider-eth) resolve as in the table tests.
const fuzzPath = "testdata/fuzz.yml"

// specVersion is SPEC §6.1's grammar for a version, written out again here so
// that the test does not share the code it checks.
var specVersion = regexp.MustCompile(`^(0|[1-9]\d{0,4})\.(0|[1-9]\d{0,4})\.(0|[1-9]\d{0,4})$`)

// optionsFrom picks the loading options from the bits of b, so that the fuzzer
// explores what pod, init and start each accept.
func optionsFrom(b uint8) Options {
	return Options{IgnoreServices: b&1 != 0, AllowNoServices: b&2 != 0, Pod: b&4 != 0}
}

// FuzzParse: Parse never panics; what it rejects it rejects with problems that
// name the file; what it accepts is deterministic, passes Validate, keeps every
// promise of SPEC §3 (names, durations, signals, roles, paths), and reads back to
// the very same values from a canonical YAML rendering of it, so that no value is
// accepted that re-encodes differently.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yml")
	for _, p := range seeds {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, uint8(0))
	}
	f.Add([]byte(SampleConfig()), uint8(2))
	f.Add([]byte("services: []\n"), uint8(2))
	f.Add([]byte("rolling: !!bool 1\nservices: [{name: a, args: [rpcprovider]}]\n"), uint8(0))
	f.Add([]byte("x: &a {name: a, args: [rpcconsumer]}\nservices: [*a]\n"), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, ob uint8) {
		opts := optionsFrom(ob)
		c, err := Parse(data, fuzzPath, Overrides{}, opts)
		if err != nil {
			checkRejection(t, err)
			return
		}
		again, err := Parse(data, fuzzPath, Overrides{}, opts)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("second Parse differs: %v\nfirst  %+v\nsecond %+v", err, c, again)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v\n%s", err, data)
		}
		checkPromises(t, c, opts)

		yml := render(t, c)
		back, err := Parse(yml, fuzzPath, Overrides{}, opts)
		if err != nil {
			t.Fatalf("accepted\n%s\nbut not its rendering\n%s\n%v", data, yml, err)
		}
		if got, want := values(back), values(c); !reflect.DeepEqual(got, want) {
			t.Fatalf("accepted\n%s\nwhich renders as\n%s\nand reads back as\n%+v\nnot\n%+v", data, yml, got, want)
		}
	})
}

// FuzzRenderedConfig: a config built in code from the fuzzer's values that
// Validate accepts is written as YAML; Parse must accept that file and read back
// exactly the same values (the decoder and the validator agree, and every value
// survives its YAML form: quoting, escapes, odd Unicode, extreme durations).
func FuzzRenderedConfig(f *testing.F) {
	f.Add("provider-eth", "rpcprovider\x1fprovider.yml\x1f--geolocation\x1f1", int64(15*time.Second), int64(4<<20), uint8(2), uint8(0), 3, "6.2.5", "LAVA_X", "1", "lava-testnet-2")
	f.Add("c", "rpcconsumer\x1f'\"\\\x00\x1f\u2028\x1f~\x1fnull\x1f- x\x1f#", int64(math.MaxInt64), int64(math.MaxInt64), uint8(15), uint8(7), math.MaxInt, "", "K", "\t\n", "")
	f.Add("0-0", "rpcprovider\x1f\uFEFF\x1f: x\x1f*a\x1f&b\x1f!!int\x1f0x10\x1fyes", int64(1), int64(1), uint8(9), uint8(255), 1, "10000.0.0", "é", "ï¿½", "x")
	f.Fuzz(func(t *testing.T, name, argList string, dur, size int64, sig, flags uint8, keep int, pin, envKey, envVal, chainID string) {
		c := Default()
		c.Path = absPath(t, fuzzPath)
		c.ChainID, c.Pin, c.KeepReleases = chainID, pin, keep
		c.RequestTimeout, c.PollInterval = Duration(dur), Duration(dur/2)
		c.Download.MaxSize, c.MaxResponseSize = ByteSize(size), ByteSize(size)
		c.StopSignal = Signal(signalNames[int(sig)%len(signalNames)].sig)
		c.UpgradeSpread = Duration(dur / 3)
		if flags&4 != 0 {
			minute := func(n int64) time.Duration { return time.Duration((n%1440+1440)%1440) * time.Minute }
			c.UpgradeWindow = Window{Start: minute(size), End: minute(int64(keep))}
		}
		c.GRPCInsecure, c.AutoDownload, c.Rolling = flags&1 != 0, flags&2 != 0, flags&4 != 0
		if flags&8 != 0 {
			c.Restart = RestartOnFailure
		}
		s := Service{Name: name, Args: strings.Split(argList, "\x1f"), KeyringPassword: flags&16 != 0}
		if flags&32 != 0 {
			s.Env = map[string]string{envKey: envVal}
		}
		if flags&64 != 0 {
			s.StopTimeout = time.Duration(dur)
			s.StopSignal = syscall.SIGTERM
		}
		if RoleFromArgs(s.Args) == "" && flags&128 != 0 {
			s.Role = RoleConsumer
		}
		c.Services = []Service{c.Effective(s)}
		if c.Validate() != nil || !allUTF8(&c) {
			return // YAML cannot carry other bytes than UTF-8
		}
		yml := render(t, &c)
		back, err := Parse(yml, fuzzPath, Overrides{}, Options{})
		if err != nil {
			t.Fatalf("Validate accepts the config that renders as\n%s\nbut Parse rejects it: %v", yml, err)
		}
		if got, want := values(back), values(&c); !reflect.DeepEqual(got, want) {
			t.Fatalf("rendered\n%s\nreads back as\n%+v\nnot\n%+v", yml, got, want)
		}
	})
}

func absPath(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// checkRejection: a rejected file gets an *Error whose every problem says what
// is wrong and names the file.
func checkRejection(t *testing.T, err error) {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) == 0 {
		t.Fatalf("rejection is not a *config.Error with problems: %#v", err)
	}
	for _, p := range ce.Problems {
		if p.Msg == "" || !strings.HasPrefix(p.String(), fuzzPath) {
			t.Fatalf("problem %+v does not name the file or says nothing", p)
		}
	}
}

// checkPromises asserts, independently of the validator's code, what SPEC §3
// promises of a config that loads.
func checkPromises(t *testing.T, c *Config, opts Options) {
	t.Helper()
	name := regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	for _, d := range []Duration{c.RequestTimeout, c.Download.Timeout, c.Download.ConnectTimeout, c.BadReleaseRetry} {
		if d <= 0 {
			t.Fatalf("a duration that must be positive is %s", d)
		}
	}
	for _, d := range []Duration{c.PollInterval, c.StopTimeout, c.MinUptime} {
		if d < 0 {
			t.Fatalf("negative duration %s", d)
		}
	}
	if c.KeepReleases < 1 || c.Download.MaxSize <= 0 || c.MaxResponseSize <= 0 {
		t.Fatalf("keep-releases %d, max-size %d, max-response-size %d", c.KeepReleases, c.Download.MaxSize, c.MaxResponseSize)
	}
	if c.Pin != "" && !validSpecVersion(c.Pin) {
		t.Fatalf("pin %q is not a version", c.Pin)
	}
	if c.Link != LinkAuto && c.Link != LinkNone && !filepath.IsAbs(c.Link) {
		t.Fatalf("link %q", c.Link)
	}
	if !c.Restart.Valid() || !c.Upgrade.Valid() || !validSignal(c.StopSignal.Std()) {
		t.Fatalf("restart %q, upgrade %q, stop-signal %v", c.Restart, c.Upgrade, c.StopSignal)
	}
	if opts.IgnoreServices && c.Services != nil {
		t.Fatalf("services decoded although ignored: %+v", c.Services)
	}
	if len(c.Services) == 0 && !opts.IgnoreServices && !opts.AllowNoServices {
		t.Fatal("accepted a config with no services for start")
	}
	seen := map[string]bool{}
	for _, s := range c.Services {
		if len(s.Name) > 63 || !name.MatchString(s.Name) || seen[s.Name] {
			t.Fatalf("service name %q breaks the name rule or is a duplicate", s.Name)
		}
		seen[s.Name] = true
		if s.StopTimeout < 0 || s.MinUptime < 0 || !validSignal(s.StopSignal) || !s.Restart.Valid() {
			t.Fatalf("service %s: stop-timeout %s, min-uptime %s, stop-signal %v, restart %q", s.Name, s.StopTimeout, s.MinUptime, s.StopSignal, s.Restart)
		}
		if s.Dir != "" && !filepath.IsAbs(s.Dir) {
			t.Fatalf("service %s: dir %q not made absolute", s.Name, s.Dir)
		}
		for k, v := range s.Env {
			if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
				t.Fatalf("service %s: env %q=%q", s.Name, k, v)
			}
		}
		if h := s.Health; h != nil {
			kinds := 0
			for _, set := range []bool{h.HTTP != "", h.TCP != "", len(h.Exec) > 0} {
				if set {
					kinds++
				}
			}
			if kinds != 1 || (len(h.Exec) > 0 && !filepath.IsAbs(h.Exec[0])) || h.Failures < 1 || h.RestartAfter < 0 ||
				h.Interval <= 0 || h.StartInterval <= 0 || h.Timeout <= 0 || h.StartPeriod <= 0 ||
				(h.InsecureTLS && !strings.HasPrefix(h.HTTP, "https://")) {
				t.Fatalf("service %s: health %+v", s.Name, h)
			}
		}
		if s.Command != "" {
			if !filepath.IsAbs(s.Command) || s.Role != "" {
				t.Fatalf("command service %s: command %q, role %q", s.Name, s.Command, s.Role)
			}
			continue
		}
		if len(s.Args) == 0 || s.Args[0] == "lavap" || strings.HasSuffix(s.Args[0], "/lavap") || !s.Role.Valid() {
			t.Fatalf("lavap service %s: args %q, role %q", s.Name, s.Args, s.Role)
		}
		if r := RoleFromArgs(s.Args); r != "" && r != s.Role {
			t.Fatalf("service %s: role %s with args[0] %q", s.Name, s.Role, s.Args[0])
		}
	}
}

func validSpecVersion(s string) bool {
	m := specVersion.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	for _, p := range m[1:] {
		if n, _ := strconv.Atoi(p); n > 10000 {
			return false
		}
	}
	return true
}

// values is what a Config means, without the record of where it was read.
func values(c *Config) Config {
	v := *c
	v.src = nil
	v.Services = append([]Service(nil), c.Services...)
	for i := range v.Services {
		v.Services[i].Line = 0
		if h := v.Services[i].Health; h != nil {
			hv := *h
			hv.Line = 0
			v.Services[i].Health = &hv
		}
	}
	if c.Services == nil {
		v.Services = nil
	}
	return v
}

func allUTF8(c *Config) bool {
	strs := []string{c.ChainID, c.Node, c.GRPCAddr, c.Download.URL, c.Download.Checksums, c.ReleasesDir, c.Link, c.Pin}
	for _, s := range c.Services {
		strs = append(strs, s.Name, s.Command, string(s.Role), s.Dir)
		strs = append(strs, s.Args...)
		if h := s.Health; h != nil {
			strs = append(strs, h.HTTP, h.TCP)
			strs = append(strs, h.Exec...)
		}
		for k, v := range s.Env {
			strs = append(strs, k, v)
		}
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// render writes c as canonical YAML: every key, every string double-quoted,
// each service with its effective values spelled out.
func render(t *testing.T, c *Config) []byte {
	t.Helper()
	str := func(s string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Style: yaml.DoubleQuotedStyle, Value: s}
	}
	plain := func(tag, s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: s} }
	boolean := func(b bool) *yaml.Node { return plain("!!bool", strconv.FormatBool(b)) }
	prefetch := func(s string) *yaml.Node {
		if s == PrefetchAuto {
			return plain("!!str", s)
		}
		return plain("!!bool", s)
	}
	mapping := func(kv ...any) *yaml.Node {
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for i := 0; i < len(kv); i += 2 {
			n.Content = append(n.Content, plain("!!str", kv[i].(string)), kv[i+1].(*yaml.Node))
		}
		return n
	}
	services := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, s := range c.Services {
		kv := []any{"name", str(s.Name)}
		if s.Command != "" {
			kv = append(kv, "command", str(s.Command))
		}
		if s.Args != nil {
			args := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for _, a := range s.Args {
				args.Content = append(args.Content, str(a))
			}
			kv = append(kv, "args", args)
		}
		if s.Role != "" {
			kv = append(kv, "role", str(string(s.Role)))
		}
		if s.Env != nil {
			env := mapping()
			for _, k := range sortedKeys(s.Env) {
				env.Content = append(env.Content, str(k), str(s.Env[k]))
			}
			kv = append(kv, "env", env)
		}
		if s.Dir != "" {
			kv = append(kv, "dir", str(s.Dir))
		}
		kv = append(kv,
			"stop-timeout", str(s.StopTimeout.String()),
			"stop-signal", str(Signal(s.StopSignal).String()),
			"min-uptime", str(s.MinUptime.String()),
			"restart", str(string(s.Restart)),
			"keyring-password", boolean(s.KeyringPassword))
		if h := s.Health; h != nil {
			hkv := []any{}
			switch {
			case h.HTTP != "":
				hkv = append(hkv, "http", str(h.HTTP))
			case h.TCP != "":
				hkv = append(hkv, "tcp", str(h.TCP))
			default:
				exec := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
				for _, a := range h.Exec {
					exec.Content = append(exec.Content, str(a))
				}
				hkv = append(hkv, "exec", exec)
			}
			hkv = append(hkv,
				"insecure-tls", boolean(h.InsecureTLS),
				"interval", str(h.Interval.String()),
				"start-interval", str(h.StartInterval.String()),
				"timeout", str(h.Timeout.String()),
				"start-period", str(h.StartPeriod.String()),
				"failures", plain("!!int", strconv.Itoa(h.Failures)),
				"restart-after", str(h.RestartAfter.String()))
			kv = append(kv, "health", mapping(hkv...))
		}
		services.Content = append(services.Content, mapping(kv...))
	}
	d := c.Download
	root := mapping(
		"chain-id", str(c.ChainID),
		"node", str(c.Node),
		"grpc-addr", str(c.GRPCAddr),
		"grpc-insecure", boolean(c.GRPCInsecure),
		"request-timeout", str(c.RequestTimeout.String()),
		"max-response-size", str(c.MaxResponseSize.String()),
		"poll-interval", str(c.PollInterval.String()),
		"auto-download", boolean(c.AutoDownload),
		"prefetch", prefetch(c.Prefetch),
		"download", mapping(
			"url", str(d.URL),
			"checksums", str(d.Checksums),
			"require-checksum", boolean(d.RequireChecksum),
			"timeout", str(d.Timeout.String()),
			"connect-timeout", str(d.ConnectTimeout.String()),
			"max-size", str(d.MaxSize.String())),
		"releases-dir", str(c.ReleasesDir),
		"keep-releases", plain("!!int", strconv.Itoa(c.KeepReleases)),
		"link", str(c.Link),
		"stop-timeout", str(c.StopTimeout.String()),
		"stop-signal", str(c.StopSignal.String()),
		"min-uptime", str(c.MinUptime.String()),
		"restart", str(string(c.Restart)),
		"upgrade", str(string(c.Upgrade)),
		"rolling", boolean(c.Rolling),
		"pin", str(c.Pin),
		"bad-release-retry", str(c.BadReleaseRetry.String()),
		"upgrade-window", str(c.UpgradeWindow.String()),
		"upgrade-spread", str(c.UpgradeSpread.String()),
		"logs-dir", str(c.LogsDir),
		"log-max-size", str(c.LogMaxSize.String()),
		"log-max-files", plain("!!int", strconv.Itoa(c.LogMaxFiles)),
	)
	if c.Services != nil {
		root.Content = append(root.Content, plain("!!str", "services"), services)
	}
	out, err := yaml.Marshal(root)
	if err != nil {
		t.Fatalf("render %+v: %v", c, err)
	}
	return out
}
