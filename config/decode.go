package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder walks a yaml.Node tree into a Config. Every key is checked against the
// keys known at its level and every value is converted by hand, so that each
// problem is reported with its line and the walk goes on to find the next one.
type decoder struct {
	src   *sources
	probs []Problem
	// failed lists the key paths whose value could not be decoded: Validate
	// would only report them again, less clearly.
	failed []string
}

// field decodes one value; key is its full key path.
type field func(v *yaml.Node, key string)

// errf reports a value that could not be decoded.
func (d *decoder) errf(n *yaml.Node, key, format string, args ...any) {
	d.note(n, key, format, args...)
	d.failed = append(d.failed, key)
}

// note reports a problem with a key itself (unknown, duplicate), which leaves
// the value already decoded, if any, to be validated.
func (d *decoder) note(n *yaml.Node, key, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.src.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) config(root *yaml.Node, c *Config, ignoreServices bool) {
	services := d.services(&c.Services)
	if ignoreServices {
		services = func(*yaml.Node, string) {}
	}
	d.mapping(root, "", map[string]field{
		"chain-id":          d.str(&c.ChainID),
		"node":              d.str(&c.Node),
		"grpc-addr":         d.str(&c.GRPCAddr),
		"grpc-insecure":     d.boolean(&c.GRPCInsecure),
		"request-timeout":   d.duration(&c.RequestTimeout),
		"max-response-size": d.size(&c.MaxResponseSize),
		"poll-interval":     d.duration(&c.PollInterval),
		"auto-download":     d.boolean(&c.AutoDownload),
		"prefetch":          d.prefetch(&c.Prefetch),
		"download": func(v *yaml.Node, key string) {
			dl := &c.Download
			d.mapping(v, key, map[string]field{
				"url":              d.str(&dl.URL),
				"checksums":        d.str(&dl.Checksums),
				"require-checksum": d.boolean(&dl.RequireChecksum),
				"timeout":          d.duration(&dl.Timeout),
				"connect-timeout":  d.duration(&dl.ConnectTimeout),
				"max-size":         d.size(&dl.MaxSize),
			})
		},
		"releases-dir":      d.str(&c.ReleasesDir),
		"keep-releases":     d.integer(&c.KeepReleases),
		"link":              d.str(&c.Link),
		"stop-timeout":      d.duration(&c.StopTimeout),
		"stop-signal":       d.signal(&c.StopSignal),
		"min-uptime":        d.duration(&c.MinUptime),
		"restart":           d.str((*string)(&c.Restart)),
		"upgrade":           d.str((*string)(&c.Upgrade)),
		"rolling":           d.boolean(&c.Rolling),
		"pin":               d.str(&c.Pin),
		"bad-release-retry": d.duration(&c.BadReleaseRetry),
		"upgrade-window":    d.window(&c.UpgradeWindow),
		"upgrade-spread":    d.duration(&c.UpgradeSpread),
		"logs-dir":          d.str(&c.LogsDir),
		"log-max-size":      d.size(&c.LogMaxSize),
		"log-max-files":     d.integer(&c.LogMaxFiles),
		"services":          services,
	})
}

func (d *decoder) services(out *[]Service) field {
	return func(v *yaml.Node, key string) {
		if v.Kind != yaml.SequenceNode {
			d.errf(v, key, "want a list of services, got %s", describe(v))
			return
		}
		*out = make([]Service, len(v.Content))
		for i, item := range v.Content {
			item = resolve(item)
			k := fmt.Sprintf("%s[%d]", key, i)
			d.src.lines[k] = item.Line
			s := &(*out)[i]
			s.Line = item.Line
			d.mapping(item, k, map[string]field{
				"name":             d.str(&s.Name),
				"command":          d.str(&s.Command),
				"args":             d.strList(&s.Args),
				"role":             d.str((*string)(&s.Role)),
				"env":              d.strMap(&s.Env),
				"dir":              d.str(&s.Dir),
				"stop-timeout":     d.duration((*Duration)(&s.StopTimeout)),
				"stop-signal":      d.signal((*Signal)(&s.StopSignal)),
				"min-uptime":       d.duration((*Duration)(&s.MinUptime)),
				"restart":          d.str((*string)(&s.Restart)),
				"keyring-password": d.boolean(&s.KeyringPassword),
				"health":           d.health(&s.Health),
			})
		}
	}
}

// health decodes a service's health block over the defaults. A health key
// with nothing after it never gets here: like any null, it leaves the default,
// which for health is none.
func (d *decoder) health(out **Health) field {
	return func(v *yaml.Node, key string) {
		h := DefaultHealth()
		h.Line = d.src.lines[key]
		d.mapping(v, key, map[string]field{
			"http":           d.str(&h.HTTP),
			"insecure-tls":   d.boolean(&h.InsecureTLS),
			"tcp":            d.str(&h.TCP),
			"exec":           d.strList(&h.Exec),
			"interval":       d.duration((*Duration)(&h.Interval)),
			"start-interval": d.duration((*Duration)(&h.StartInterval)),
			"timeout":        d.duration((*Duration)(&h.Timeout)),
			"start-period":   d.duration((*Duration)(&h.StartPeriod)),
			"failures":       d.integer(&h.Failures),
			"restart-after":  d.duration((*Duration)(&h.RestartAfter)),
		})
		*out = &h
	}
}

// pairs checks that n is a mapping with unique scalar keys and calls fn for each
// pair. A null value is passed on: what it means depends on the level.
func (d *decoder) pairs(n *yaml.Node, prefix string, fn func(k, v *yaml.Node, key string)) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errf(n, prefix, "want a mapping of keys, got %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.note(k, prefix, "want a key name, got %s", describe(k))
			continue
		}
		key := k.Value
		if prefix != "" {
			key = prefix + "." + k.Value
		}
		if k.Tag == "!!merge" {
			d.note(k, prefix, "merge keys (<<) are not supported: write the keys out")
			continue
		}
		if first, ok := seen[k.Value]; ok {
			d.note(k, key, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fn(k, v, key)
	}
}

// mapping decodes a mapping whose keys are the known ones in fields. A null
// value (a key with nothing after it) leaves the default in place.
func (d *decoder) mapping(n *yaml.Node, prefix string, fields map[string]field) {
	d.pairs(n, prefix, func(k, v *yaml.Node, key string) {
		f, ok := fields[k.Value]
		if !ok {
			d.note(k, key, "unknown key%s", suggest(k.Value, fields))
			return
		}
		d.src.lines[key] = k.Line
		if v.Tag == "!!null" {
			return
		}
		d.src.given[key] = true
		f(v, key)
	})
}

// suggest names the known key that an unknown one was probably meant to be
// (stop_timeout, Stop-Timeout).
func suggest(name string, fields map[string]field) string {
	norm := strings.NewReplacer("_", "-", " ", "-").Replace(strings.ToLower(name))
	if _, ok := fields[norm]; ok && norm != name {
		return fmt.Sprintf(" (did you mean %s?)", norm)
	}
	return ""
}

// scalar returns the text of a scalar value, or reports that want was wanted.
func (d *decoder) scalar(v *yaml.Node, key, want string) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		d.errf(v, key, "want %s, got %s", want, describe(v))
		return "", false
	}
	return v.Value, true
}

func (d *decoder) str(p *string) field {
	return func(v *yaml.Node, key string) {
		if s, ok := d.scalar(v, key, "a string"); ok {
			*p = s
		}
	}
}

// prefetch reads auto, true or false.
func (d *decoder) prefetch(p *string) field {
	return func(v *yaml.Node, key string) {
		s, ok := d.scalar(v, key, "auto, true or false")
		if !ok {
			return
		}
		if v.Tag == "!!str" && s == PrefetchAuto {
			*p = PrefetchAuto
			return
		}
		b, err := strconv.ParseBool(strings.ToLower(s))
		if v.Tag != "!!bool" || err != nil {
			d.errf(v, key, "want auto, true or false, got %s", describe(v))
			return
		}
		*p = strconv.FormatBool(b)
	}
}

func (d *decoder) boolean(p *bool) field {
	return func(v *yaml.Node, key string) {
		s, ok := d.scalar(v, key, "true or false")
		if !ok {
			return
		}
		b, err := strconv.ParseBool(strings.ToLower(s))
		if v.Tag != "!!bool" || err != nil {
			d.errf(v, key, "want true or false, got %s", describe(v))
			return
		}
		*p = b
	}
}

func (d *decoder) integer(p *int) field {
	return func(v *yaml.Node, key string) {
		if _, ok := d.scalar(v, key, "an integer"); !ok {
			return
		}
		var n int
		// Decoding a lone scalar cannot meet unknown keys, so yaml.v3's own
		// integer syntax (0x10, 1_000) is safe to reuse here.
		if v.Tag != "!!int" || v.Decode(&n) != nil {
			d.errf(v, key, "want an integer, got %s", describe(v))
			return
		}
		*p = n
	}
}

func (d *decoder) duration(p *Duration) field {
	return func(v *yaml.Node, key string) {
		s, ok := d.scalar(v, key, "a duration such as 15s")
		if !ok {
			return
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.errf(v, key, "%v", err)
			return
		}
		*p = dur
	}
}

func (d *decoder) size(p *ByteSize) field {
	return func(v *yaml.Node, key string) {
		s, ok := d.scalar(v, key, "a size such as 512MiB")
		if !ok {
			return
		}
		b, err := ParseByteSize(s)
		if err != nil {
			d.errf(v, key, "%v", err)
			return
		}
		*p = b
	}
}

func (d *decoder) signal(p *Signal) field {
	return func(v *yaml.Node, key string) {
		s, ok := d.scalar(v, key, "a signal such as SIGINT")
		if !ok {
			return
		}
		sig, err := ParseSignal(s)
		if err != nil {
			d.errf(v, key, "%v", err)
			return
		}
		*p = sig
	}
}

func (d *decoder) window(p *Window) field {
	return func(v *yaml.Node, key string) {
		s, ok := d.scalar(v, key, `a window such as "02:00-04:00"`)
		if !ok {
			return
		}
		w, err := ParseWindow(s)
		if err != nil {
			d.errf(v, key, "%v", err)
			return
		}
		*p = w
	}
}

func (d *decoder) strList(p *[]string) field {
	return func(v *yaml.Node, key string) {
		if v.Kind != yaml.SequenceNode {
			d.errf(v, key, "want a list, got %s", describe(v))
			return
		}
		out := make([]string, 0, len(v.Content))
		for i, item := range v.Content {
			if s, ok := d.scalar(resolve(item), fmt.Sprintf("%s[%d]", key, i), "a string"); ok {
				out = append(out, s)
			}
		}
		*p = out
	}
}

func (d *decoder) strMap(p *map[string]string) field {
	return func(v *yaml.Node, key string) {
		out := map[string]string{}
		d.pairs(v, key, func(k, val *yaml.Node, key string) {
			d.src.lines[key] = k.Line
			if val.Tag == "!!null" { // FOO: with nothing after it is an empty value
				out[k.Value] = ""
				return
			}
			if s, ok := d.scalar(val, key, "a string"); ok {
				out[k.Value] = s
			}
		})
		*p = out
	}
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		v := n.Value
		if len(v) > 60 {
			v = v[:60] + "..."
		}
		return strconv.Quote(v)
	}
	return "something else"
}
