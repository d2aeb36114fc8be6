package config

import (
	"strings"
	"syscall"
	"time"
)

// Config is a whole config.yml (SPEC §3) after defaults, file and overrides.
type Config struct {
	ChainID         string   `yaml:"chain-id"`
	Node            string   `yaml:"node"`
	GRPCAddr        string   `yaml:"grpc-addr"`
	GRPCInsecure    bool     `yaml:"grpc-insecure"`
	RequestTimeout  Duration `yaml:"request-timeout"`
	MaxResponseSize ByteSize `yaml:"max-response-size"` // bound on one chain response body
	PollInterval    Duration `yaml:"poll-interval"`     // 0: from the chain's block time
	AutoDownload    bool     `yaml:"auto-download"`
	// Prefetch is PrefetchAuto (follow AutoDownload, SPEC §8), "true" or
	// "false"; see PrefetchOn.
	Prefetch        string        `yaml:"prefetch"`
	Download        Download      `yaml:"download"`
	ReleasesDir     string        `yaml:"releases-dir"` // "": <home>/upgrades, resolved by the caller
	KeepReleases    int           `yaml:"keep-releases"`
	Link            string        `yaml:"link"` // LinkAuto, LinkNone or an absolute path
	StopTimeout     Duration      `yaml:"stop-timeout"`
	StopSignal      Signal        `yaml:"stop-signal"`
	MinUptime       Duration      `yaml:"min-uptime"`
	Restart         RestartPolicy `yaml:"restart"`
	Upgrade         UpgradeMode   `yaml:"upgrade"`
	Rolling         bool          `yaml:"rolling"`
	Pin             string        `yaml:"pin"` // "" or X.Y.Z
	BadReleaseRetry Duration      `yaml:"bad-release-retry"`
	UpgradeWindow   Window        `yaml:"upgrade-window"` // zero: any time (SPEC §10)
	UpgradeSpread   Duration      `yaml:"upgrade-spread"` // 0: no spread
	LogsDir         string        `yaml:"logs-dir"`       // "": no log files; absolute after Load
	LogMaxSize      ByteSize      `yaml:"log-max-size"`
	LogMaxFiles     int           `yaml:"log-max-files"`
	Services        []Service     `yaml:"services"`

	// Path is the absolute path of the file read, "" when none was.
	Path string `yaml:"-"`

	// src remembers where each value came from, so that Validate can name the
	// line or the flag. It is shared by copies of the Config and never changed
	// after Parse returns.
	src *sources
}

// Download says where releases come from and how they are checked.
type Download struct {
	// URL and Checksums may hold {version}, {os} and {arch}.
	URL             string   `yaml:"url"`
	Checksums       string   `yaml:"checksums"` // "": no checksum source
	RequireChecksum bool     `yaml:"require-checksum"`
	Timeout         Duration `yaml:"timeout"` // one whole download
	ConnectTimeout  Duration `yaml:"connect-timeout"`
	MaxSize         ByteSize `yaml:"max-size"`
}

// Service is one supervised process.
type Service struct {
	Name string `yaml:"name"`
	// Command is "" for the current release's lavap, else the absolute path of
	// another program (rewritten so after Load).
	Command string            `yaml:"command"`
	Args    []string          `yaml:"args"` // the arguments after the binary
	Role    Role              `yaml:"role"` // "" only for command services
	Env     map[string]string `yaml:"env"`  // added to the inherited environment
	Dir     string            `yaml:"dir"`  // absolute after Load; "" left to the caller

	// Effective values: the service's own key when given, else the global one
	// (after overrides).
	StopTimeout time.Duration  `yaml:"-"`
	StopSignal  syscall.Signal `yaml:"-"`
	MinUptime   time.Duration  `yaml:"-"`
	Restart     RestartPolicy  `yaml:"-"`

	KeyringPassword bool `yaml:"keyring-password"`
	// Health says how to ask the service whether it serves (SPEC §7); nil
	// when it has no health key: then it counts as healthy while it runs.
	Health *Health `yaml:"health"`
	Line   int     `yaml:"-"` // line of the service in the file, for messages
}

// Health is a service's health check (SPEC §7): exactly one of HTTP, TCP and
// Exec is set, and every duration is filled (DefaultHealth) after Load.
type Health struct {
	HTTP        string   // http:// or https:// URL; a 2xx answer is healthy
	InsecureTLS bool     // skip certificate checks of an https URL
	TCP         string   // host:port; an accepted connection is healthy
	Exec        []string // argv, Exec[0] an absolute path; exit 0 is healthy

	Interval      time.Duration // between checks
	StartInterval time.Duration // between checks during StartPeriod
	Timeout       time.Duration // one check
	StartPeriod   time.Duration // a (re)started service has this long to become healthy
	RestartAfter  time.Duration // >0: restart a service unhealthy this long; 0: off
	Failures      int           // consecutive failures, after StartPeriod, that make it unhealthy

	Line int // line of the health key in the file, 0 when built in code
}

// Values of Config.Link that are not paths.
const (
	LinkAuto = "auto"
	LinkNone = "none"
)

// Default download locations of the official lavap releases.
const (
	DefaultDownloadURL  = "https://github.com/lavanet/lava/releases/download/v{version}/lavap-v{version}-{os}-{arch}"
	DefaultChecksumsURL = "https://github.com/lavanet/lava/releases/download/v{version}/sha256sum.txt"
)

// Default is the one place where defaults are set. SampleConfig shows the same
// values, and a test keeps the two in step.
func Default() Config {
	return Config{
		Node:            "tcp://127.0.0.1:26657",
		RequestTimeout:  Duration(10 * time.Second),
		MaxResponseSize: 4 << 20,
		Download: Download{
			URL:             DefaultDownloadURL,
			Checksums:       DefaultChecksumsURL,
			RequireChecksum: true,
			Timeout:         Duration(10 * time.Minute),
			ConnectTimeout:  Duration(30 * time.Second),
			MaxSize:         512 << 20,
		},
		KeepReleases:    3,
		Link:            LinkAuto,
		StopTimeout:     Duration(15 * time.Second),
		StopSignal:      Signal(syscall.SIGINT),
		MinUptime:       Duration(10 * time.Second),
		Restart:         RestartAlways,
		Upgrade:         UpgradeTarget,
		Rolling:         true,
		Prefetch:        PrefetchAuto,
		BadReleaseRetry: Duration(time.Hour),
		LogMaxSize:      100 << 20,
		LogMaxFiles:     5,
	}
}

// DefaultHealth is the one place where the defaults of a health check are set;
// the file's and pod's flags start from it. It sets no kind of check: that has
// no default (SPEC §7: no address is invented).
func DefaultHealth() Health {
	return Health{
		Interval:      5 * time.Second,
		StartInterval: time.Second,
		Timeout:       2 * time.Second,
		StartPeriod:   90 * time.Second,
		Failures:      3,
	}
}

// Service returns the service called name.
func (c *Config) Service(name string) (Service, bool) {
	for _, s := range c.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// UsesFileSource reports whether the versions come from a file:// source rather
// than from a node.
func (c Config) UsesFileSource() bool { return strings.HasPrefix(c.Node, "file://") }

// FileSource is the path of the file:// version source, "" when a node is used.
func (c Config) FileSource() string {
	if p, ok := strings.CutPrefix(c.Node, "file://"); ok {
		return p
	}
	return ""
}

// Nodes splits Node into its comma-separated entries, in the order to try them.
func (c Config) Nodes() []string {
	var out []string
	for _, n := range strings.Split(c.Node, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}

// Effective returns s with what it leaves unset taken from c: a zero stop
// timeout, stop signal, min uptime or restart policy from the globals, and the
// role of a lavap service from its first argument. Load does this itself, telling
// an explicit 0s from an absent key; Effective is for services built in code,
// such as the one `pod` runs.
func (c Config) Effective(s Service) Service {
	if s.StopTimeout == 0 {
		s.StopTimeout = c.StopTimeout.Std()
	}
	if s.StopSignal == 0 {
		s.StopSignal = c.StopSignal.Std()
	}
	if s.MinUptime == 0 {
		s.MinUptime = c.MinUptime.Std()
	}
	if s.Restart == "" {
		s.Restart = c.Restart
	}
	if s.Command == "" && s.Role == "" {
		s.Role = RoleFromArgs(s.Args)
	}
	return s
}

// PrefetchAuto is the default of the prefetch key: on when auto-download is.
const PrefetchAuto = "auto"

// PrefetchOn says whether version proposals are read and their releases
// pre-fetched (SPEC §8): the prefetch key, else on when auto-download is.
func (c *Config) PrefetchOn() bool {
	if c.Prefetch == PrefetchAuto || c.Prefetch == "" {
		return c.AutoDownload
	}
	return c.Prefetch == "true"
}
