package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode"

	"github.com/lavavisor/lavavisor/redact"
)

// Validate reports every problem of c at once, as an *Error, or nil. On a Config
// from Load it finds nothing new; it is for Configs changed or built in code.
func (c *Config) Validate() error { return newError(c.problems()) }

type validator struct {
	c     *Config
	src   *sources
	probs []Problem
	// kinds names the kinds of health check in messages: the keys, or pod's
	// flags.
	kinds [3]string
}

var healthKeys = [3]string{"http", "tcp", "exec"}

func (v *validator) errf(key, format string, args ...any) {
	p := v.src.at(key)
	p.Msg = fmt.Sprintf(format, args...)
	v.probs = append(v.probs, p)
}

func (c *Config) problems() []Problem {
	src := c.src
	if src == nil {
		src = newSources(c.Path)
	}
	v := &validator{c: c, src: src, kinds: healthKeys}
	v.chain()
	v.download()
	v.home()
	v.process()
	v.services()
	return v.probs
}

func (v *validator) chain() {
	c := v.c
	if c.ChainID != "" {
		switch {
		case c.UsesFileSource():
			v.errf("chain-id", "cannot be checked against a file:// source: remove chain-id or use a node")
		case len(c.ChainID) > 50 || strings.IndexFunc(c.ChainID, unicode.IsSpace) >= 0:
			v.errf("chain-id", "invalid chain id %q: want at most 50 characters, no spaces", c.ChainID)
		}
	}
	if err := checkNode(c.Node); err != nil {
		v.errf("node", "%v", err)
	}
	if c.GRPCAddr != "" {
		if err := checkHostPort(c.GRPCAddr, "grpc.example.com:443"); err != nil {
			v.errf("grpc-addr", "%v", err)
		}
	}
	v.positive("request-timeout", c.RequestTimeout)
	if c.MaxResponseSize <= 0 {
		v.errf("max-response-size", "%d: must be more than 0", c.MaxResponseSize)
	}
	v.nonNegative("poll-interval", c.PollInterval)
}

func (v *validator) download() {
	d := v.c.Download
	if err := checkURLTemplate(d.URL, true); err != nil {
		v.errf("download.url", "%v", err)
	}
	switch {
	case d.Checksums == "" && d.RequireChecksum:
		v.errf("download.checksums", "empty while download.require-checksum is true, so no download could ever be installed: set a checksums URL, or require-checksum: false")
	case d.Checksums != "":
		if err := checkURLTemplate(d.Checksums, false); err != nil {
			v.errf("download.checksums", "%v", err)
		}
	}
	v.positive("download.timeout", d.Timeout)
	v.positive("download.connect-timeout", d.ConnectTimeout)
	if d.MaxSize <= 0 {
		v.errf("download.max-size", "%d: must be more than 0", d.MaxSize)
	}
}

func (v *validator) home() {
	c := v.c
	if c.ReleasesDir != "" {
		if fi, err := os.Stat(c.ReleasesDir); err == nil && !fi.IsDir() {
			v.errf("releases-dir", "%s is not a directory", c.ReleasesDir)
		}
	}
	if c.KeepReleases < 1 {
		v.errf("keep-releases", "%d: must be at least 1 (the current release is always kept)", c.KeepReleases)
	}
	switch {
	case c.Link == LinkAuto || c.Link == LinkNone:
	case !filepath.IsAbs(c.Link):
		v.errf("link", "%q: want auto, none or an absolute path", c.Link)
	default:
		if fi, err := os.Stat(c.Link); err == nil && fi.IsDir() {
			v.errf("link", "%s is a directory: want the path of the lavap link itself, such as %s", c.Link, filepath.Join(c.Link, "lavap"))
		}
	}
	if c.Pin != "" {
		if err := checkVersion(c.Pin); err != nil {
			v.errf("pin", "%v", err)
		}
	}
	v.logFiles()
}

// logFiles checks logs-dir, log-max-size and log-max-files (SPEC §9).
func (v *validator) logFiles() {
	c := v.c
	if c.LogsDir != "" {
		if !filepath.IsAbs(c.LogsDir) {
			v.errf("logs-dir", "%q: want an absolute path (in the file, a path relative to its folder)", c.LogsDir)
		} else if fi, err := os.Stat(c.LogsDir); err == nil && !fi.IsDir() {
			v.errf("logs-dir", "%s is not a directory", c.LogsDir)
		}
	}
	// The rotation library counts in whole MiB.
	if c.LogMaxSize < 1<<20 {
		v.errf("log-max-size", "%s: must be at least 1MiB (files are rotated in whole MiB)", c.LogMaxSize)
	}
	if c.LogMaxFiles < 1 {
		v.errf("log-max-files", "%d: must be at least 1 (the rotated files kept)", c.LogMaxFiles)
	}
}

func (v *validator) process() {
	c := v.c
	v.nonNegative("stop-timeout", c.StopTimeout)
	if err := checkSignal(c.StopSignal.Std()); err != nil {
		v.errf("stop-signal", "%v", err)
	}
	v.nonNegative("min-uptime", c.MinUptime)
	if err := c.Restart.check(); err != nil {
		v.errf("restart", "%v", err)
	}
	if err := c.Upgrade.check(); err != nil {
		v.errf("upgrade", "%v", err)
	}
	v.positive("bad-release-retry", c.BadReleaseRetry)
	v.nonNegative("upgrade-spread", c.UpgradeSpread)
	if w := c.UpgradeWindow; !w.IsZero() && c.UpgradeSpread.Std() >= w.Length() {
		v.errf("upgrade-spread", "%s: must be shorter than upgrade-window %s (open %s), or the last instances would never fit in it", c.UpgradeSpread, w, w.Length())
	}
}

var serviceName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (v *validator) services() {
	c := v.c
	if len(c.Services) == 0 && v.src.requireServices {
		file := v.src.file
		if file == "" {
			file = "config.yml"
		}
		v.errf("services", "no services: add one to %s (see lavavisor create-service)", file)
	}
	first := map[string]int{}
	for i, s := range c.Services {
		key := fmt.Sprintf("services[%d]", i)
		switch {
		case s.Name == "" && !v.src.given[key+".name"]:
			v.errf(key, "missing name: every service needs one")
		case !serviceName.MatchString(s.Name):
			v.errf(key+".name", "invalid name %q: want lowercase letters, digits and dashes, starting with a letter or digit, at most 63 characters (%s)", s.Name, serviceName)
		default:
			if j, dup := first[s.Name]; dup {
				v.errf(key+".name", "duplicate name %q (first at %s)", s.Name, v.where(fmt.Sprintf("services[%d].name", j)))
			} else {
				first[s.Name] = i
			}
		}
		if s.Command == "" {
			v.lavapService(key, s)
		} else {
			if s.Role != "" {
				v.errf(key+".role", "set on a command service: command services get no version handling; remove role")
			}
			if _, err := resolveCommand(s.Command, c.baseDir()); err != nil {
				v.errf(key+".command", "%v", err)
			}
		}
		for _, name := range sortedKeys(s.Env) {
			if name == "" || strings.ContainsAny(name, "=\x00") {
				v.errf(key+".env."+name, "invalid variable name %q", name)
			}
			if strings.ContainsRune(s.Env[name], 0) {
				v.errf(key+".env."+name, "value contains a NUL byte")
			}
		}
		if s.Dir != "" {
			if err := checkDir(s.Dir, c.baseDir()); err != nil {
				v.errf(key+".dir", "%v", err)
			}
		}
		// A bad value inherited from the globals is reported once, there.
		if s.StopTimeout < 0 && s.StopTimeout != c.StopTimeout.Std() {
			v.errf(key+".stop-timeout", "negative duration %s", s.StopTimeout)
		}
		if s.MinUptime < 0 && s.MinUptime != c.MinUptime.Std() {
			v.errf(key+".min-uptime", "negative duration %s", s.MinUptime)
		}
		if err := checkSignal(s.StopSignal); err != nil && s.StopSignal != c.StopSignal.Std() {
			v.errf(key+".stop-signal", "%v", err)
		}
		if err := s.Restart.check(); err != nil && s.Restart != c.Restart {
			v.errf(key+".restart", "%v", err)
		}
		if s.Health != nil {
			v.health(key+".health", s.Health)
		}
	}
}

// health checks one health block; key is its key path.
func (v *validator) health(key string, h *Health) {
	// A kind given in the file counts even when its value could not be
	// decoded or is empty: that problem is reported on its own key.
	given := func(k string, set bool) bool { return set || v.src.given[key+"."+k] }
	var kinds []string
	for i, set := range []bool{h.HTTP != "", h.TCP != "", h.Exec != nil} {
		if given(healthKeys[i], set) {
			kinds = append(kinds, healthKeys[i])
		}
	}
	if len(kinds) != 1 {
		v.errf(key, "want exactly one of %s", strings.Join(v.kinds[:], ", "))
	}
	for _, k := range kinds {
		switch k {
		case "http":
			if err := checkHealthURL(h.HTTP); err != nil {
				v.errf(key+".http", "%v", err)
			}
		case "tcp":
			if err := checkHostPort(h.TCP, "127.0.0.1:2220"); err != nil {
				v.errf(key+".tcp", "%v", err)
			}
		case "exec":
			switch {
			case len(h.Exec) == 0:
				v.errf(key+".exec", "empty: want the program's absolute path and its arguments, such as [/usr/local/bin/check-provider, eth]")
			case !filepath.IsAbs(h.Exec[0]):
				v.errf(key+".exec[0]", "%q: want an absolute path (a health check must not depend on a working directory)", h.Exec[0])
			default:
				if _, err := resolveCommand(h.Exec[0], ""); err != nil {
					v.errf(key+".exec[0]", "%v", err)
				}
			}
		}
	}
	if h.InsecureTLS && len(kinds) == 1 && !strings.HasPrefix(h.HTTP, "https://") {
		v.errf(key+".insecure-tls", "only for an https:// URL in %s", v.kinds[0])
	}
	v.positive(key+".interval", Duration(h.Interval))
	v.positive(key+".start-interval", Duration(h.StartInterval))
	v.positive(key+".timeout", Duration(h.Timeout))
	v.positive(key+".start-period", Duration(h.StartPeriod))
	v.nonNegative(key+".restart-after", Duration(h.RestartAfter))
	if h.Failures < 1 {
		v.errf(key+".failures", "%d: must be at least 1", h.Failures)
	}
}

// checkHealthURL checks the URL of an http health check.
func checkHealthURL(s string) error {
	const want = "want an http:// or https:// URL with a host, such as http://127.0.0.1:7776/metrics/ETH1/jsonrpc/health"
	if s == "" {
		return fmt.Errorf("empty: %s", want)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("%q: not a URL: %s", s, want)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme %q: %s", s, u.Scheme, want)
	case u.Hostname() == "":
		return fmt.Errorf("%q has no host: %s", s, want)
	}
	return nil
}

func (v *validator) lavapService(key string, s Service) {
	if len(s.Args) == 0 {
		v.errf(key+".args", `empty: a lavap service needs its arguments, such as [rpcprovider, provider.yml, --from, my-key, --geolocation, "1"]`)
		return
	}
	if a := s.Args[0]; a == "lavap" || strings.HasSuffix(a, "/lavap") {
		v.errf(key+".args[0]", "%q: args are the arguments after the binary: drop the leading lavap", a)
		return
	}
	derived := RoleFromArgs(s.Args)
	switch {
	case s.Role == "":
		v.errf(key+".role", "cannot be derived from args[0] %q: set role: provider or consumer", s.Args[0])
	case !s.Role.Valid():
		v.errf(key+".role", "unknown role %q (want provider or consumer)", string(s.Role))
	case derived != "" && derived != s.Role:
		v.errf(key+".role", "%s contradicts args[0] %q, which runs a %s", s.Role, s.Args[0], derived)
	}
}

// where names the place of key for a message that points at another one.
func (v *validator) where(key string) string {
	if l := v.src.lineOf(key); l > 0 {
		return "line " + strconv.Itoa(l)
	}
	return key
}

func checkSignal(s syscall.Signal) error {
	switch {
	case s == 0:
		return fmt.Errorf("not set (want %s)", signalChoices)
	case !validSignal(s):
		return fmt.Errorf("unsupported: %s (want %s)", Signal(s), signalChoices)
	}
	return nil
}

func (v *validator) positive(key string, d Duration) {
	if d <= 0 {
		v.errf(key, "%s: must be more than 0s", d)
	}
}

func (v *validator) nonNegative(key string, d Duration) {
	if d < 0 {
		v.errf(key, "negative duration %s", d)
	}
}

// baseDir is the folder that relative paths of the file are relative to.
func (c *Config) baseDir() string {
	if c.Path == "" {
		return ""
	}
	return filepath.Dir(c.Path)
}

// absUnder makes p absolute, relative to base (the current directory if "").
func absUnder(base, p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// resolveCommand finds the program a command service runs: an absolute path, a
// path containing "/" relative to base, or a bare name looked up on PATH.
func resolveCommand(cmd, base string) (string, error) {
	var p string
	if !strings.Contains(cmd, "/") {
		found, err := exec.LookPath(cmd)
		if err != nil {
			return "", fmt.Errorf("%q not found on PATH", cmd)
		}
		p = absUnder("", found)
	} else {
		p = absUnder(base, cmd)
	}
	at := ""
	if p != cmd {
		at = " (looked at " + p + ")"
	}
	fi, err := os.Stat(p)
	switch {
	case os.IsNotExist(err):
		return "", fmt.Errorf("%q not found%s", cmd, at)
	case err != nil:
		return "", fmt.Errorf("%q: %w", cmd, err)
	case fi.IsDir():
		return "", fmt.Errorf("%q is a directory%s: want an executable file", cmd, at)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%q is not a regular file%s", cmd, at)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%q is not executable%s: chmod +x it", cmd, at)
	}
	return p, nil
}

// checkDir checks that a service's working directory exists.
func checkDir(dir, base string) error {
	p := absUnder(base, dir)
	at := ""
	if p != dir {
		at = " (looked at " + p + ")"
	}
	fi, err := os.Stat(p)
	switch {
	case os.IsNotExist(err):
		return fmt.Errorf("%q does not exist%s", dir, at)
	case err != nil:
		return fmt.Errorf("%q: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("%q is not a directory%s", dir, at)
	}
	return nil
}

const nodeWant = "want tcp://, http:// or https:// with a host (several separated by commas), or a single file:///absolute/path"

func checkNode(node string) error {
	entries := strings.Split(node, ",")
	if strings.TrimSpace(node) == "" {
		return fmt.Errorf("empty: %s", nodeWant)
	}
	for _, e := range entries {
		e = strings.TrimSpace(e)
		shown := redact.URL(e)
		if e == "" {
			return fmt.Errorf("empty entry in %q: %s", redact.URL(node), nodeWant)
		}
		u, err := url.Parse(e)
		if err != nil {
			return fmt.Errorf("entry %q: %s", shown, nodeWant)
		}
		switch u.Scheme {
		case "file":
			if len(entries) > 1 {
				return fmt.Errorf("file:// source %q cannot be mixed with other entries: %s", shown, nodeWant)
			}
			if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
				return fmt.Errorf("entry %q: want file:///absolute/path (three slashes)", shown)
			}
		case "tcp", "http", "https":
			if u.Hostname() == "" {
				return fmt.Errorf("entry %q has no host: %s", shown, nodeWant)
			}
		default:
			return fmt.Errorf("entry %q: %s", shown, nodeWant)
		}
	}
	return nil
}

// checkHostPort checks an address to connect to; example shows a good one.
func checkHostPort(addr, example string) error {
	host, port, err := net.SplitHostPort(addr)
	bad := fmt.Errorf("%q: want host:port, such as %s", addr, example)
	if err != nil || host == "" || strings.Contains(host, "/") {
		return bad
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad
	}
	return nil
}

var placeholder = regexp.MustCompile(`\{[^{}]*\}`)

// checkURLTemplate checks a download URL with its {version}, {os} and {arch}.
func checkURLTemplate(raw string, needVersion bool) error {
	s := redact.URL(raw) // s is what messages show
	if raw == "" {
		return fmt.Errorf("empty: want an http, https or file URL with {version}")
	}
	for _, p := range placeholder.FindAllString(raw, -1) {
		if p != "{version}" && p != "{os}" && p != "{arch}" {
			return fmt.Errorf("%q: unknown placeholder %s (want {version}, {os} or {arch})", s, p)
		}
	}
	if needVersion && !strings.Contains(raw, "{version}") {
		return fmt.Errorf("%q has no {version}: every release needs its own URL", s)
	}
	u, err := url.Parse(strings.NewReplacer("{version}", "1.2.3", "{os}", "linux", "{arch}", "amd64").Replace(raw))
	if err != nil {
		return fmt.Errorf("%q: not a URL", s)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Hostname() == "" {
			return fmt.Errorf("%q has no host", s)
		}
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return fmt.Errorf("%q: want file:///absolute/path (three slashes)", s)
		}
	default:
		return fmt.Errorf("%q: scheme %q: want http, https or file", s, u.Scheme)
	}
	return nil
}

var versionSyntax = regexp.MustCompile(`^(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})$`)

// checkVersion applies the grammar of SPEC §6.1, the same that chain versions
// pass, so that a pin can name a release folder.
func checkVersion(s string) error {
	bad := fmt.Errorf(`invalid version %q: want X.Y.Z with no leading zeros and no "v", each part at most 10000`, s)
	m := versionSyntax.FindStringSubmatch(s)
	if m == nil {
		return bad
	}
	for _, part := range m[1:] {
		if n, _ := strconv.Atoi(part); n > 10000 {
			return bad
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
