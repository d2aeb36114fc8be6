// Package health asks a service whether it serves (SPEC §7): one check by
// HTTP, TCP or a program, and a Monitor that turns the checks of one process
// into the states starting, healthy and unhealthy.
package health

import (
	"strconv"
	"strings"
	"time"
)

// Spec is one service's health check as config.yml declares it. Exactly one
// of HTTP, TCP and Exec is set; config validates that and fills the defaults.
type Spec struct {
	HTTP        string   // http:// or https:// URL; 2xx = healthy; no redirects followed; at most 64 KiB read
	InsecureTLS bool     // https with a self-signed certificate
	TCP         string   // host:port; a connection accepted = healthy
	Exec        []string // argv, Exec[0] absolute; exit 0 = healthy; no shell

	Interval      time.Duration // between checks after the start period (> 0)
	StartInterval time.Duration // between checks during the start period; 0: Interval
	Timeout       time.Duration // one check; 0: no limit of its own
	StartPeriod   time.Duration // failures during it do not count
	Failures      int           // consecutive failures after start-period that make it unhealthy (>=1)
	RestartAfter  time.Duration // used by the caller only
}

// IsZero reports that no check is configured: such a service is healthy
// while it runs.
func (s Spec) IsZero() bool {
	return s.HTTP == "" && s.TCP == "" && len(s.Exec) == 0
}

// Describe names the check for reasons and logs: "GET http://...",
// "tcp 127.0.0.1:2220", "exec /usr/bin/x a b".
func (s Spec) Describe() string {
	switch {
	case s.HTTP != "":
		return "GET " + s.HTTP
	case s.TCP != "":
		return "tcp " + s.TCP
	case len(s.Exec) > 0:
		var b strings.Builder
		b.WriteString("exec")
		for _, a := range s.Exec {
			b.WriteByte(' ')
			b.WriteString(quoteArg(a))
		}
		return b.String()
	}
	return "none"
}

// quoteArg quotes an argument only where reading the argv back from the
// reason would otherwise be ambiguous (spaces, quotes, empty).
func quoteArg(a string) string {
	if a == "" || strings.ContainsAny(a, " \t\n\"'\\") || !strconv.CanBackquote(a) {
		return strconv.Quote(a)
	}
	return a
}
