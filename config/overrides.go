package config

import (
	"path/filepath"
	"time"
)

// Overrides are values from flags or environment variables. A nil field was not
// given and never overrides the file.
type Overrides struct {
	Node, GRPCAddr, ChainID, DownloadURL, ChecksumsURL, ReleasesDir, Link, Pin *string
	GRPCInsecure, AutoDownload, RequireChecksum, Rolling                       *bool
	RequestTimeout, PollInterval, StopTimeout, MinUptime                       *time.Duration
	StopSignal                                                                 *string // parsed like the YAML value
	Restart, Upgrade                                                           *string
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

	var probs []Problem
	if o.ReleasesDir != nil {
		// A path typed on the command line is relative to where it was typed.
		dir := *o.ReleasesDir
		if e, err := ExpandHome(dir); err == nil {
			dir = e
		}
		if dir != "" {
			if abs, err := filepath.Abs(dir); err == nil {
				dir = abs
			}
		}
		str(&c.ReleasesDir, &dir, "releases-dir", "--releases-dir")
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
