package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Options adapt loading to the command that loads.
type Options struct {
	// IgnoreServices skips the file's services: not decoded, not validated
	// (`pod` runs its own command).
	IgnoreServices bool
	// AllowMissing makes a missing file give Default() with the overrides
	// instead of an error (`pod` works without a home prepared beforehand).
	AllowMissing bool
	// AllowNoServices accepts an empty services list, as `init` and `check`
	// can; `start` cannot.
	AllowNoServices bool
	// Pod uses pod's defaults where the file and the flags are silent:
	// auto-download on and link none (SPEC §4: a container fetches what the
	// chain wants, and has no system path worth linking).
	Pod bool
}

// Load reads the config file at path, decodes it strictly, applies o, fills
// each service's effective values and validates the result. Every problem found
// is reported at once in an *Error, each naming the file and line, or the flag.
func Load(path string, o Overrides, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if opts.AllowMissing && errors.Is(err, fs.ErrNotExist) {
			return build(nil, path, "", o, opts)
		}
		return nil, fmt.Errorf("read config file: %w", err)
	}
	return Parse(data, path, o, opts)
}

// Parse is Load from bytes already read; path names the file in messages and is
// the base of relative paths (the current directory when "").
func Parse(data []byte, path string, o Overrides, opts Options) (*Config, error) {
	abs := ""
	if path != "" {
		var err error
		if abs, err = filepath.Abs(path); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	root, err := parseYAML(data, path)
	if err != nil {
		return nil, err
	}
	return build(root, path, abs, o, opts)
}

var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlParserProblems are the problems yaml.v3's parser (not its scanner)
// reports. For these, yaml.v3 v3.0.1 prints a 0-based line, and no line at all
// for the first one.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// yamlErrorLine splits a yaml.v3 syntax error into a 1-based line (0 if
// unknown) and the problem.
func yamlErrorLine(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlErrLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if slices.Contains(yamlParserProblems, msg) {
		line++
	}
	return line, msg
}

// parseYAML returns the top node of the one document in data.
func parseYAML(data []byte, path string) (*yaml.Node, error) {
	fail := func(line int, format string, args ...any) error {
		return newError([]Problem{{File: path, Line: line, Msg: fmt.Sprintf(format, args...)}})
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return nil, fail(0, "empty config file")
	}
	if err != nil {
		line, msg := yamlErrorLine(err)
		if lines := bytes.Split(data, []byte("\n")); line > 0 && line <= len(lines) &&
			bytes.HasPrefix(bytes.TrimLeft(lines[line-1], " "), []byte("\t")) {
			msg += " (a tab: YAML is indented with spaces only)"
		}
		return nil, fail(line, "invalid YAML: %s", msg)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return nil, fail(next.Line, "more than one YAML document: keep one")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, fail(0, "empty config file")
	}
	root := resolve(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, fail(0, "empty config file")
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "want a mapping of keys such as node: and services:, got %s", describe(root))
	}
	return root, nil
}

// build turns a parsed file (nil for none) into a checked Config.
func build(root *yaml.Node, path, abs string, o Overrides, opts Options) (*Config, error) {
	c := Default()
	if opts.Pod {
		c.AutoDownload, c.Link = true, LinkNone
	}
	c.Path = abs
	src := newSources(path)
	src.requireServices = !opts.IgnoreServices && !opts.AllowNoServices
	c.src = src
	d := &decoder{src: src}
	if root != nil {
		d.config(root, &c, opts.IgnoreServices)
	}
	c.resolvePaths()
	for _, p := range applyOverrides(&c, o, src) {
		d.probs = append(d.probs, p)
		d.failed = append(d.failed, p.Key)
	}
	c.fillServices()

	probs := d.probs
	for _, p := range c.problems() {
		if !within(p.Key, d.failed) {
			probs = append(probs, p)
		}
	}
	if err := newError(probs); err != nil {
		return nil, err
	}
	return &c, nil
}

// within reports whether key is one of keys or nested in one, so that a value
// that could not be decoded is not reported a second time by Validate.
func within(key string, keys []string) bool {
	for _, k := range keys {
		if k == "" {
			continue
		}
		if key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[") {
			return true
		}
	}
	return false
}

// resolvePaths makes the file's relative paths relative to its folder, as the
// operator who wrote them next to config.yml means, whatever the current
// directory, and ~ mean $HOME. Paths that do not resolve are left alone for Validate to report.
func (c *Config) resolvePaths() {
	base := c.baseDir()
	expand := func(p *string) {
		if e, err := ExpandHome(*p); err == nil {
			*p = e
		}
	}
	expand(&c.ReleasesDir)
	expand(&c.Link)
	expand(&c.LogsDir)
	if c.ReleasesDir != "" && !filepath.IsAbs(c.ReleasesDir) {
		c.ReleasesDir = filepath.Join(base, c.ReleasesDir)
	}
	if c.LogsDir != "" && !filepath.IsAbs(c.LogsDir) {
		c.LogsDir = filepath.Join(base, c.LogsDir)
	}
	for i := range c.Services {
		s := &c.Services[i]
		expand(&s.Dir)
		expand(&s.Command)
		if s.Dir != "" && checkDir(s.Dir, base) == nil {
			s.Dir = absUnder(base, s.Dir)
		}
		if s.Command != "" {
			if p, err := resolveCommand(s.Command, base); err == nil {
				s.Command = p
			}
		}
	}
}

// fillServices gives each service the global value of every key it does not set.
func (c *Config) fillServices() {
	for i := range c.Services {
		s := &c.Services[i]
		k := fmt.Sprintf("services[%d].", i)
		if !c.src.given[k+"stop-timeout"] {
			s.StopTimeout = c.StopTimeout.Std()
		}
		if !c.src.given[k+"stop-signal"] {
			s.StopSignal = c.StopSignal.Std()
		}
		if !c.src.given[k+"min-uptime"] {
			s.MinUptime = c.MinUptime.Std()
		}
		if !c.src.given[k+"restart"] {
			s.Restart = c.Restart
		}
		if s.Command == "" && !c.src.given[k+"role"] {
			s.Role = RoleFromArgs(s.Args)
		}
	}
}
