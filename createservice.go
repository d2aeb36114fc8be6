package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/alecthomas/kong"
	"github.com/sirupsen/logrus"
	"gopkg.in/yaml.v3"

	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
	"github.com/lavavisor/lavavisor/upgrade"
)

// createServiceCmd adds one lavap service to config.yml (SPEC §4): the move
// from one systemd unit per lavap process to one LavaVisor.
type createServiceCmd struct {
	Role           string   `arg:"" enum:"provider,consumer" help:"provider (lavap rpcprovider) or consumer (lavap rpcconsumer)."`
	ConfigFile     string   `arg:"" name:"config" type:"path" help:"The lavap config file of the service (provider.yml, consumer.yml); copied into services/<name>/."`
	From           string   `required:"" placeholder:"KEY" help:"Key that signs for the service (lavap --from)."`
	Geolocation    uint64   `required:"" placeholder:"N" help:"Geolocation of the service (lavap --geolocation)."`
	KeyringBackend string   `name:"keyring-backend" placeholder:"BACKEND" help:"Keyring backend (lavap --keyring-backend): os, file, test."`
	Name           string   `placeholder:"NAME" help:"Service name: lowercase letters, digits and dashes. Default: <role>-<config file name>, or the file name when it starts with the role (provider-eth.yml: provider-eth)."`
	LavapArgs      []string `arg:"" optional:"" name:"lavap-args" help:"More lavap arguments, after --."`
}

// serviceNameRule is config's rule for a service name, checked here first so
// that a bad --name is a usage error rather than a config error.
var serviceNameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// AfterApply refuses words that kong would take as lavap arguments without a
// `--` before them: a stray word is more likely a typo than a lavap argument.
func (c *createServiceCmd) AfterApply(kctx *kong.Context) error {
	after := 0
	if i := slices.Index(kctx.Args, "--"); i >= 0 {
		after = len(kctx.Args) - i - 1
	}
	if len(c.LavapArgs) > after {
		return fmt.Errorf("unexpected argument %q: more lavap arguments go after --, as in: lavavisor create-service provider provider.yml --from KEY --geolocation 1 -- --log_level debug", c.LavapArgs[0])
	}
	return nil
}

func (c *createServiceCmd) Run(g *Globals, log *logrus.Logger, sink *supervisor.Sink) error {
	// A stop signal is caught from here: the command finishes or undoes the
	// step it is in (every write is atomic), then exits 130 (SPEC §6.8).
	stop := newStopper(log.WithField("component", "signals"))
	defer stop.close()
	err := c.run(g, log, stop)
	if errors.Is(err, errInterrupted) {
		return interrupted(stop)
	}
	return err
}

// errInterrupted says a stop signal undid the command.
var errInterrupted = errors.New("interrupted")

func (c *createServiceCmd) run(g *Globals, log *logrus.Logger, stop *stopper) error {
	lg := log.WithField("component", "create-service")
	usage := func(format string, args ...any) error {
		return &exitError{code: 2, err: fmt.Errorf(format, args...)}
	}
	sub := "rpc" + c.Role // rpcprovider, rpcconsumer
	name := c.Name
	if name == "" {
		name = defaultServiceName(c.Role, c.ConfigFile)
	} else if !serviceNameRule.MatchString(name) {
		return usage("--name %q: want lowercase letters, digits and dashes, starting with a letter or digit, at most 63 characters", name)
	}

	src, srcMode, err := readServiceConfig(c.ConfigFile)
	if err != nil {
		return err
	}
	base := filepath.Base(c.ConfigFile)
	if strings.HasPrefix(base, "-") {
		return fmt.Errorf("lavap config file %s: a name starting with - would be read by lavap as a flag: rename it", c.ConfigFile)
	}

	h := newHome(g.Directory)
	cfgPath := h.configFile()
	// Read-modify-write under the home's config lock: two create-service
	// run at once must both land (SPEC §2).
	if err := os.MkdirAll(h.root, 0o755); err != nil {
		return fmt.Errorf("create home: %w", err)
	}
	lockCtx, cancel := context.WithTimeout(stop.Context(), configLockWait)
	lock, err := upgrade.WaitLock(lockCtx, h.configLock())
	cancel()
	if err != nil {
		return fmt.Errorf("config.yml is being changed by another command: %w", err)
	}
	defer lock.Unlock()
	// A symlinked config.yml stays a link: the file it points at is
	// replaced, atomically in its own folder.
	target, err := configTarget(cfgPath)
	if err != nil {
		return err
	}
	old, cfgMode, created, err := readHomeConfig(target)
	if err != nil {
		return err
	}
	o := g.overrides()
	cfg, err := config.Parse(old, cfgPath, o, config.Options{AllowNoServices: true})
	if err != nil {
		return fmt.Errorf("config.yml is not valid; fix it first:\n%w", err)
	}
	if s, dup := cfg.Service(name); dup {
		return fmt.Errorf("a service named %q is already in %s (line %d): choose another --name", name, cfgPath, s.Line)
	}
	rel := "services/" + name // relative to config.yml's folder, which config resolves
	svcDir := h.path(filepath.FromSlash(rel))
	switch _, err := os.Lstat(svcDir); {
	case err == nil:
		return fmt.Errorf("%s already exists: choose another --name, or remove that folder", svcDir)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("service folder: %w", err)
	}

	args := []string{sub, base, "--from", c.From, "--geolocation", strconv.FormatUint(c.Geolocation, 10)}
	node := serviceNode(cfg)
	if node != "" {
		args = append(args, "--node", node)
	}
	if cfg.ChainID != "" {
		args = append(args, "--chain-id", cfg.ChainID)
	}
	if c.KeyringBackend != "" {
		args = append(args, "--keyring-backend", c.KeyringBackend)
	}
	for _, a := range c.LavapArgs {
		flag, _, _ := strings.Cut(a, "=")
		if strings.HasPrefix(flag, "--") && slices.Contains(args[2:], flag) {
			return usage("lavap argument %q: create-service sets %s itself (--node and --chain-id are LavaVisor's own)", a, flag)
		}
	}
	args = append(args, c.LavapArgs...)

	item := serviceItem{name: name, args: args, dir: rel}
	updated, err := appendService(old, item)
	if err != nil {
		return fmt.Errorf("append the service to %s: %w", cfgPath, err)
	}
	if err := checkAppended(old, updated, item, cfgPath, o, len(cfg.Services)); err != nil {
		return fmt.Errorf("append the service to %s: %w; add it by hand:\n%s", cfgPath, err, item.render(2, 4))
	}

	// Every check passed: only now is anything written.
	undo, err := install(svcDir, base, src, srcMode, target, updated, cfgMode)
	if err != nil {
		return err
	}
	loaded, err := config.Load(cfgPath, o, config.Options{})
	if err == nil {
		if s, ok := loaded.Service(name); !ok || !slices.Equal(s.Args, args) || s.Dir != svcDir {
			err = fmt.Errorf("service %q does not read back as written", name)
		}
	}
	if err == nil && stop.Context().Err() != nil {
		// Stopped while it worked: undo, so that the exit (130) and the
		// files agree.
		err = errInterrupted
	}
	if errors.Is(err, errInterrupted) {
		if uerr := undo(old, created); uerr != nil {
			return fmt.Errorf("interrupted, and undoing the change failed: %w", uerr)
		}
		return err
	}
	if err != nil {
		if uerr := undo(old, created); uerr != nil {
			return fmt.Errorf("%s after the change: %w; and undoing it failed: %v", cfgPath, err, uerr)
		}
		return fmt.Errorf("%s after the change: %w; nothing was changed", cfgPath, err)
	}

	if created {
		lg.WithField("config", cfgPath).Info("no config.yml in the home: created it from the sample (see `lavavisor init`)")
	}
	if node == "" {
		lg.WithField("node", cfg.Node).Warn("LavaVisor reads the versions from a file, not a node: the service gets no --node; give lavap one after -- if it needs it")
	}
	fmt.Printf("added service %s to %s\n", name, cfgPath)
	fmt.Printf("copied %s to %s\n", c.ConfigFile, filepath.Join(svcDir, base))
	fmt.Printf("it runs: lavap %s (in %s)\n", shellJoin(args), svcDir)
	fmt.Println("restart lavavisor or send it SIGHUP to start it")
	return nil
}

// shellJoin quotes args as a POSIX shell reads them, so that the command shown
// can be pasted to try it by hand.
func shellJoin(args []string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:@=+,%-") == "" {
			quoted[i] = a
		} else {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}

// defaultServiceName is <role>-<config file name>, made a valid service name;
// a file already named for its role (provider.yml, provider-eth.yml) is not
// prefixed again.
func defaultServiceName(role, file string) string {
	stem := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(stem) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	stem = strings.Trim(b.String(), "-")
	name := role + "-" + stem
	switch {
	case stem == "":
		name = role
	case stem == role || strings.HasPrefix(stem, role+"-"):
		name = stem
	}
	if len(name) > 63 {
		name = strings.TrimRight(name[:63], "-")
	}
	return name
}

// configLockWait bounds the wait for another create-service to finish.
const configLockWait = 30 * time.Second

// configTarget is the file to replace for config.yml: the path itself, or
// the file a symlinked config.yml points at.
func configTarget(cfgPath string) (string, error) {
	fi, err := os.Lstat(cfgPath)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return cfgPath, nil
	}
	target, err := filepath.EvalSymlinks(cfgPath)
	if err != nil {
		link, _ := os.Readlink(cfgPath)
		return "", fmt.Errorf("config file %s is a symlink to %s, which cannot be read (%w): fix or remove the link", cfgPath, link, err)
	}
	return target, nil
}

// readServiceConfig reads the lavap config file to copy.
func readServiceConfig(path string) ([]byte, fs.FileMode, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, 0, fmt.Errorf("lavap config file %s does not exist", path)
	case err != nil:
		return nil, 0, fmt.Errorf("lavap config file: %w", err)
	case fi.IsDir():
		return nil, 0, fmt.Errorf("lavap config file %s is a directory: give the file itself, such as provider.yml", path)
	case !fi.Mode().IsRegular():
		return nil, 0, fmt.Errorf("lavap config file %s is not a regular file", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("lavap config file: %w", err)
	}
	// The copy keeps the source's mode but never gets execute bits or group
	// and other write (0644 at most), and its owner can always rewrite it.
	return b, fi.Mode().Perm()&0o644 | 0o600, nil
}

// readHomeConfig reads config.yml, or gives the sample when the home has none
// yet (created reports that), so that create-service works on a fresh home.
func readHomeConfig(path string) (data []byte, mode fs.FileMode, created bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return []byte(config.SampleConfig()), 0o644, true, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("read config file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, false, fmt.Errorf("read config file: %s is not a regular file", path)
	}
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, 0, false, fmt.Errorf("read config file: %w", err)
	}
	return data, fi.Mode().Perm(), false, nil
}

// serviceNode is the --node a service gets: LavaVisor's first RPC node, or ""
// when LavaVisor reads its versions from a file.
func serviceNode(cfg *config.Config) string {
	for _, n := range cfg.Nodes() {
		for _, scheme := range []string{"tcp://", "http://", "https://"} {
			if strings.HasPrefix(n, scheme) {
				return n
			}
		}
	}
	return ""
}

// install makes the service folder, copies the lavap config into it and
// replaces config.yml, each atomically. The returned undo puts config.yml back
// as it was and removes the folder.
func install(svcDir, base string, src []byte, srcMode fs.FileMode, cfgPath string, updated []byte, cfgMode fs.FileMode) (func(old []byte, created bool) error, error) {
	undo := func(old []byte, created bool) error {
		var errs []error
		if created {
			if err := os.Remove(cfgPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		} else if err := upgrade.WriteFileAtomic(cfgPath, old, cfgMode); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(svcDir); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	if err := os.MkdirAll(filepath.Dir(svcDir), 0o755); err != nil {
		return nil, fmt.Errorf("make the service folder: %w", err)
	}
	// Mkdir, not MkdirAll: a folder that appeared since the check is not ours.
	if err := os.Mkdir(svcDir, 0o755); err != nil {
		return nil, fmt.Errorf("make the service folder: %w", err)
	}
	if err := upgrade.WriteFileAtomic(filepath.Join(svcDir, base), src, srcMode); err != nil {
		os.RemoveAll(svcDir)
		return nil, fmt.Errorf("copy the lavap config file: %w", err)
	}
	if err := upgrade.WriteFileAtomic(cfgPath, updated, cfgMode); err != nil {
		os.RemoveAll(svcDir)
		return nil, err
	}
	return undo, nil
}

// serviceItem is the entry create-service appends to the services list.
type serviceItem struct {
	name string
	args []string
	dir  string
}

// render writes the item as a block list entry: the dash after dash spaces,
// the keys after key spaces. Every scalar is written by yaml.v3, so that an
// argument YAML would misread ("1", "yes", "a, b", "#x") comes out quoted.
func (s serviceItem) render(dash, key int) string {
	if key <= dash {
		key = dash + 2
	}
	pad := strings.Repeat(" ", key)
	return strings.Repeat(" ", dash) + "-" + strings.Repeat(" ", key-dash-1) + "name: " + yamlScalar(s.name) + "\n" +
		pad + "args: " + yamlFlowList(s.args) + "\n" +
		pad + "dir: " + yamlScalar(s.dir) + "\n"
}

// yamlScalar and yamlFlowList cannot fail on strings; what yaml.v3 makes of
// an odd one (invalid UTF-8 becomes !!binary) is caught by checkAppended.
func yamlScalar(v string) string {
	b, _ := yaml.Marshal(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v})
	return strings.TrimSuffix(string(b), "\n")
}

func yamlFlowList(vs []string) string {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, v := range vs {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v})
	}
	b, _ := yaml.Marshal(n)
	return strings.TrimSuffix(string(b), "\n")
}

// appendService returns data with item added as the last entry of the
// top-level services list. Every byte outside the added block is kept, with
// one exception: an empty `services: []` or `services: ~` loses its value
// token (comments on that line stay), so that a block list can follow it.
// The file is not re-marshalled: positions come from yaml.v3's nodes.
func appendService(data []byte, item serviceItem) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("want a mapping of keys, such as node and services")
	}
	root := doc.Content[0]
	if root.Style&yaml.FlowStyle != 0 {
		return nil, errors.New("the file is one flow mapping ({...}): write it in block style (one key a line)")
	}
	t := newText(data)
	indent := root.Column - 1
	var key, val *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "services" {
			key, val = root.Content[i], root.Content[i+1]
		}
	}
	switch {
	case key == nil:
		block := strings.Repeat(" ", indent) + "services:\n" + item.render(indent+2, indent+4)
		return t.insert(len(data), block), nil

	case val.Kind == yaml.ScalarNode && val.Tag == "!!null",
		val.Kind == yaml.SequenceNode && val.Style&yaml.FlowStyle != 0 && len(val.Content) == 0:
		start := t.offset(val.Line, val.Column)
		end, err := t.emptyValueEnd(start, val)
		if err != nil {
			return nil, err
		}
		if end > start { // drop the token and the spaces between the colon and it
			for start > 0 && (data[start-1] == ' ' || data[start-1] == '\t') {
				start--
			}
		}
		at := t.lineEnd(end) - (end - start)
		b := append(append([]byte{}, data[:start]...), data[end:]...)
		return newText(b).insert(at, item.render(key.Column-1+2, key.Column-1+4)), nil

	case val.Kind == yaml.SequenceNode && val.Style&yaml.FlowStyle == 0 && len(val.Content) > 0:
		dash := val.Column - 1 // a block list's node starts at its first dash
		last := val.Content[len(val.Content)-1]
		at := t.itemEnd(last.Line, dash)
		return t.insert(at, item.render(dash, last.Column-1)), nil
	}
	return nil, fmt.Errorf("line %d: services is %s: create-service appends to a block list (one \"- name: ...\" entry a line) or to an empty one", val.Line, describeNode(val))
}

func describeNode(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.AliasNode:
		return "an alias (*" + n.Value + ")"
	case n.Kind == yaml.SequenceNode:
		return "a flow list ([...])"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	}
	return "a single value"
}

// text locates yaml.v3 positions (1-based lines, columns in characters) in
// the bytes of a file.
type text struct {
	data  []byte
	lines []int // byte offset of the start of each line
}

func newText(data []byte) text {
	t := text{data: data, lines: []int{0}}
	for i, c := range data {
		if c == '\n' {
			t.lines = append(t.lines, i+1)
		}
	}
	return t
}

// offset turns a line and column into a byte offset.
func (t text) offset(line, col int) int {
	if line < 1 || line > len(t.lines) {
		return len(t.data)
	}
	off := t.lines[line-1]
	for i := 1; i < col && off < len(t.data) && t.data[off] != '\n'; i++ {
		_, size := utf8.DecodeRune(t.data[off:])
		off += size
	}
	return off
}

// lineEnd is the offset just past the newline of the line holding off, or the
// end of the data when that line has none.
func (t text) lineEnd(off int) int {
	if i := bytes.IndexByte(t.data[off:], '\n'); i >= 0 {
		return off + i + 1
	}
	return len(t.data)
}

// insert returns the data with block inserted at at, which is the start of a
// line or the end of the data; a last line without a newline gets one.
func (t text) insert(at int, block string) []byte {
	out := make([]byte, 0, len(t.data)+len(block)+1)
	out = append(out, t.data[:at]...)
	if at > 0 && t.data[at-1] != '\n' {
		out = append(out, '\n')
	}
	out = append(out, block...)
	return append(out, t.data[at:]...)
}

// emptyValueEnd is the offset just past an empty services value that starts
// at start: `[]` (spaces inside allowed), `~` or `null`; start itself when
// the key has no value at all.
func (t text) emptyValueEnd(start int, val *yaml.Node) (int, error) {
	if val.Kind == yaml.ScalarNode {
		if val.Value != "" && !bytes.HasPrefix(t.data[start:], []byte(val.Value)) {
			return 0, fmt.Errorf("line %d: cannot find the value %q of services", val.Line, val.Value)
		}
		return start + len(val.Value), nil
	}
	if start >= len(t.data) || t.data[start] != '[' {
		return 0, fmt.Errorf("line %d: cannot find the [] of services", val.Line)
	}
	for i := start + 1; i < len(t.data); i++ {
		switch t.data[i] {
		case ']':
			return i + 1, nil
		case ' ', '\t', '\r', '\n':
		default:
			return 0, fmt.Errorf("line %d: services: [ ] holds a comment or more: write it as services: []", val.Line)
		}
	}
	return 0, fmt.Errorf("line %d: services: [ is not closed", val.Line)
}

// itemEnd is the offset just past the last line of the list entry that starts
// on line first, in a list whose dashes are indented by dash spaces. The entry
// goes on over every line indented deeper than its dash (its keys, its
// multi-line values, comments inside it) and ends before the first line that
// is not: the next key, or a comment about what follows. Blank lines before
// that line are left after the new entry.
func (t text) itemEnd(first, dash int) int {
	end := t.lineEnd(t.offset(first, 1))
	for l := first + 1; l <= len(t.lines); l++ {
		start := t.lines[l-1]
		if start >= len(t.data) {
			break
		}
		line := t.data[start:t.lineEnd(start)]
		body := bytes.TrimLeft(line, " ")
		if len(bytes.TrimSpace(body)) == 0 {
			continue
		}
		if len(line)-len(body) <= dash {
			break
		}
		end = t.lineEnd(start)
	}
	return end
}

// checkAppended proves the splice right before anything is written: the new
// file decodes to the old one with exactly item added at the end of services,
// and it passes config's validation. The service folder does not exist yet,
// so that one problem of the new service is expected.
func checkAppended(old, updated []byte, item serviceItem, path string, o config.Overrides, index int) error {
	var before, after map[string]any
	if err := yaml.Unmarshal(old, &before); err != nil {
		return err
	}
	if err := yaml.Unmarshal(updated, &after); err != nil {
		return fmt.Errorf("the result would not be valid YAML: %w", err)
	}
	oldList, _ := before["services"].([]any)
	newList, _ := after["services"].([]any)
	delete(before, "services")
	delete(after, "services")
	args := make([]any, len(item.args))
	for i, a := range item.args {
		args[i] = a
	}
	want := map[string]any{"name": item.name, "args": args, "dir": item.dir}
	same := len(newList) == len(oldList)+1 && reflect.DeepEqual(before, after) &&
		reflect.DeepEqual(newList[len(oldList)], want)
	for i := 0; same && i < len(oldList); i++ {
		same = reflect.DeepEqual(oldList[i], newList[i])
	}
	if !same {
		return errors.New("the file's layout would make the new entry change other entries")
	}
	_, err := config.Parse(updated, path, o, config.Options{})
	var cerr *config.Error
	if err == nil || !errors.As(err, &cerr) {
		return err
	}
	var rest []config.Problem
	for _, p := range cerr.Problems {
		if p.Key != fmt.Sprintf("services[%d].dir", index) {
			rest = append(rest, p)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	return &config.Error{Problems: rest}
}
