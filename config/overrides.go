package config

import (
	"path/filepath"
	"time"
)

// Overrides are values from flags or environment variables. A nil field was not
// given and never overrides the file.
type Overrides struct {
	Node, GRPCAddr, ChainID, DownloadURL, ChecksumsURL, ReleasesDir, Link, Pin, UpgradeWindow *string
	GRPCInsecure, AutoDownload, RequireChecksum, Rolling                                      *bool
	RequestTimeout, PollInterval, StopTimeout, MinUptime, UpgradeSpread                       *time.Duration
	StopSignal                                                                                *string // parsed like the YAML value
	Restart, Upgrade                                                                          *string
	LogsDir, LogMaxSize                                                                       *string // LogMaxSize parsed like the YAML value
	LogMaxFiles                                                                               *int
}

// applyOverrides sets every value given in o, and records the flag that gave it
// so that a bad value is reported against the flag rather than a line.
func applyOverrides(c *Config, o Overrides, src *sources) []Problem {
	str := func(dst *string, v *string, key, flag string) {
		if v != nil {
			*dst = *v
			src.flags[key] = flag
		}
	}
	boolean := func(dst *bool, v *bool, key, flag string) {
		if v != nil {
			*dst = *v
			src.flags[key] = flag
		}
	}
	duration := func(dst *Duration, v *time.Duration, key, flag string) {
		if v != nil {
			*dst = Duration(*v)
			src.flags[key] = flag
		}
	}
	str(&c.Node, o.Node, "node", "--node")
	str(&c.GRPCAddr, o.GRPCAddr, "grpc-addr", "--grpc-addr")
	str(&c.ChainID, o.ChainID, "chain-id", "--chain-id")
	str(&c.Download.URL, o.DownloadURL, "download.url", "--download-url")
	str(&c.Download.Checksums, o.ChecksumsURL, "download.checksums", "--checksums-url")
	link := o.Link
	if link != nil {
		if e, err := ExpandHome(*link); err == nil {
			link = &e
		}
	}
	str(&c.Link, link, "link", "--link")
	str(&c.Pin, o.Pin, "pin", "--pin")
	str((*string)(&c.Restart), o.Restart, "restart", "--restart")
	str((*string)(&c.Upgrade), o.Upgrade, "upgrade", "--upgrade")
	boolean(&c.GRPCInsecure, o.GRPCInsecure, "grpc-insecure", "--grpc-insecure")
	boolean(&c.AutoDownload, o.AutoDownload, "auto-download", "--auto-download")
	boolean(&c.Download.RequireChecksum, o.RequireChecksum, "download.require-checksum", "--require-checksum")
	boolean(&c.Rolling, o.Rolling, "rolling", "--rolling")
	duration(&c.RequestTimeout, o.RequestTimeout, "request-timeout", "--request-timeout")
	duration(&c.PollInterval, o.PollInterval, "poll-interval", "--poll-interval")
	duration(&c.StopTimeout, o.StopTimeout, "stop-timeout", "--stop-timeout")
	duration(&c.MinUptime, o.MinUptime, "min-uptime", "--min-uptime")
	duration(&c.UpgradeSpread, o.UpgradeSpread, "upgrade-spread", "--upgrade-spread")

	var probs []Problem
	if o.ReleasesDir != nil {
		str(&c.ReleasesDir, flagPath(*o.ReleasesDir), "releases-dir", "--releases-dir")
	}
	if o.LogsDir != nil {
		str(&c.LogsDir, flagPath(*o.LogsDir), "logs-dir", "--logs-dir")
	}
	if o.LogMaxSize != nil {
		src.flags["log-max-size"] = "--log-max-size"
		size, err := ParseByteSize(*o.LogMaxSize)
		if err != nil {
			probs = append(probs, Problem{Flag: "--log-max-size", Key: "log-max-size", Msg: err.Error()})
		} else {
			c.LogMaxSize = size
		}
	}
	if o.LogMaxFiles != nil {
		c.LogMaxFiles = *o.LogMaxFiles
		src.flags["log-max-files"] = "--log-max-files"
	}
	if o.UpgradeWindow != nil {
		src.flags["upgrade-window"] = "--upgrade-window"
		w, err := ParseWindow(*o.UpgradeWindow)
		if err != nil {
			probs = append(probs, Problem{Flag: "--upgrade-window", Key: "upgrade-window", Msg: err.Error()})
		} else {
			c.UpgradeWindow = w
		}
	}
	if o.StopSignal != nil {
		src.flags["stop-signal"] = "--stop-signal"
		sig, err := ParseSignal(*o.StopSignal)
		if err != nil {
			probs = append(probs, Problem{Flag: "--stop-signal", Key: "stop-signal", Msg: err.Error()})
		} else {
			c.StopSignal = sig
		}
	}
	return probs
}

// flagPath makes a path typed on the command line absolute: relative to where
// it was typed, ~ meaning $HOME; "" stays "".
func flagPath(dir string) *string {
	if e, err := ExpandHome(dir); err == nil {
		dir = e
	}
	if dir != "" {
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
	}
	return &dir
}

// HealthFlags are pod's --health-* flags and LAVAVISOR_HEALTH_* variables
// (SPEC §7). A nil field was not given; Exec is nil when not given and empty
// when given empty.
type HealthFlags struct {
	HTTP, TCP                                                   *string
	Exec                                                        []string
	InsecureTLS                                                 *bool
	Interval, StartInterval, Timeout, StartPeriod, RestartAfter *time.Duration
	Failures                                                    *int
}

// healthFlagNames maps each health key to its pod flag.
var healthFlagNames = map[string]string{
	"http": "--health-http", "tcp": "--health-tcp", "exec": "--health-exec",
	"insecure-tls": "--health-insecure-tls", "interval": "--health-interval",
	"start-interval": "--health-start-interval", "timeout": "--health-timeout",
	"start-period": "--health-start-period", "failures": "--health-failures",
	"restart-after": "--health-restart-after",
}

// Health builds pod's health check from the flags given over DefaultHealth and
// validates it as the file's health key is validated, each problem naming its
// flag. It returns nil, nil when no health flag is given: no health check.
func (f HealthFlags) Health() (*Health, error) {
	h := DefaultHealth()
	var given []string // the keys given, in the order of SPEC §7
	str := func(dst *string, v *string, key string) {
		if v != nil {
			*dst = *v
			given = append(given, key)
		}
	}
	duration := func(dst *time.Duration, v *time.Duration, key string) {
		if v != nil {
			*dst = *v
			given = append(given, key)
		}
	}
	str(&h.HTTP, f.HTTP, "http")
	str(&h.TCP, f.TCP, "tcp")
	if f.Exec != nil {
		h.Exec = f.Exec
		given = append(given, "exec")
	}
	if f.InsecureTLS != nil {
		h.InsecureTLS = *f.InsecureTLS
		given = append(given, "insecure-tls")
	}
	duration(&h.Interval, f.Interval, "interval")
	duration(&h.StartInterval, f.StartInterval, "start-interval")
	duration(&h.Timeout, f.Timeout, "timeout")
	duration(&h.StartPeriod, f.StartPeriod, "start-period")
	if f.Failures != nil {
		h.Failures = *f.Failures
		given = append(given, "failures")
	}
	duration(&h.RestartAfter, f.RestartAfter, "restart-after")
	if len(given) == 0 {
		return nil, nil
	}

	src := newSources("")
	var kinds []string
	for _, k := range given {
		src.flags["health."+k] = healthFlagNames[k]
		src.given["health."+k] = true
		if k == "http" || k == "tcp" || k == "exec" {
			kinds = append(kinds, k)
		}
	}
	// "Exactly one kind" is the fault of the second kind given, or of the
	// first flag when none is.
	switch {
	case len(kinds) > 1:
		src.flags["health"] = healthFlagNames[kinds[1]]
	case len(kinds) == 0:
		src.flags["health"] = healthFlagNames[given[0]]
	}
	v := &validator{src: src, kinds: [3]string{"--health-http", "--health-tcp", "--health-exec"}}
	v.health("health", &h)
	if err := newError(v.probs); err != nil {
		return nil, err
	}
	return &h, nil
}
