package upgrade

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
)

// Binary and manifest names inside a release folder (SPEC §2).
const (
	BinaryName   = "lavap"
	ManifestName = "manifest.json"
	lockName     = ".lock"
)

// Manifest describes a release folder's binary (SPEC §2).
type Manifest struct {
	Version         string    `json:"version"`
	SHA256          string    `json:"sha256"`
	Source          string    `json:"source"` // "url" or "local"
	URL             string    `json:"url,omitempty"`
	ReportedVersion string    `json:"reported_version"`
	FetchedAt       time.Time `json:"fetched_at"`
}

// Manifest sources.
const (
	SourceURL   = "url"
	SourceLocal = "local"
)

// DefaultVersionTimeout bounds `<bin> version`.
const DefaultVersionTimeout = 10 * time.Second

// Store is a releases folder: one v<X.Y.Z>/ folder per release holding lavap and
// manifest.json. It may be shared by several instances (SPEC §2); changes to it
// are made by Fetch under <Dir>/.lock.
type Store struct {
	Dir            string
	Log            *logrus.Entry
	VersionTimeout time.Duration // for `<bin> version`; 0 means DefaultVersionTimeout
	// ReadOnly makes Verify adopt a hand-placed release in memory only,
	// writing no manifest and running no `<bin> version` (its reported
	// version stays ""): for `lavavisor check`, which runs no release binary
	// and changes nothing (SPEC §2).
	ReadOnly bool
	// Output runs `<bin> version`; nil: os/exec. Under LavaVisor's reaper it
	// must be the reaper's (see OutputFunc).
	Output OutputFunc
}

// ReleaseDir is Dir/vX.Y.Z.
func (s *Store) ReleaseDir(v chain.Version) string { return filepath.Join(s.Dir, v.Tag()) }

// BinPath is Dir/vX.Y.Z/lavap.
func (s *Store) BinPath(v chain.Version) string { return filepath.Join(s.ReleaseDir(v), BinaryName) }

// ManifestPath is Dir/vX.Y.Z/manifest.json.
func (s *Store) ManifestPath(v chain.Version) string {
	return filepath.Join(s.ReleaseDir(v), ManifestName)
}

// List returns the versions of the folders named v<X.Y.Z> (strict grammar),
// ascending. Anything else is ignored. It does not verify them (see Usable).
func (s *Store) List() []chain.Version {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log().WithError(err).Warn("cannot list the releases folder")
		}
		return nil
	}
	var vs []chain.Version
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // .lock, .tmp-*: ours
		}
		v, err := chain.ParseTag(name)
		if err != nil {
			s.log().WithField("name", name).WithError(err).Debug("ignoring a folder that is not a release tag")
			continue
		}
		fi, err := os.Lstat(filepath.Join(s.Dir, name))
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			s.log().WithField("path", filepath.Join(s.Dir, name)).Warn("ignoring a release folder that is a symlink: a release must be a real folder, and LavaVisor never writes through the link")
			continue
		}
		if err != nil || !fi.IsDir() {
			s.log().WithField("name", name).Debug("ignoring a release tag that is not a folder")
			continue
		}
		vs = append(vs, v)
	}
	slices.SortFunc(vs, chain.Version.Compare)
	return vs
}

// Usable returns the listed releases that pass Verify, ascending; each rejected
// one is logged with the reason.
func (s *Store) Usable() []chain.Version {
	var vs []chain.Version
	for _, v := range s.List() {
		if _, err := s.Verify(v); err != nil {
			s.log().WithField("release", v.Tag()).WithError(err).Warn("release folder is not usable; it counts as absent")
			continue
		}
		vs = append(vs, v)
	}
	return vs
}

// Verify checks the release v: its lavap must be a regular, non-empty, executable
// file whose sha256 matches its manifest. A release without a manifest was
// placed by hand: it is adopted (source local, sha256 computed now, manifest
// written) and verified against that manifest from then on.
func (s *Store) Verify(v chain.Version) (Manifest, error) {
	if fi, err := os.Lstat(s.ReleaseDir(v)); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return Manifest{}, fmt.Errorf("release %s: %s is a symlink, not a release folder (LavaVisor never writes through it)", v.Tag(), s.ReleaseDir(v))
	}
	bin := s.BinPath(v)
	if err := checkBinary(bin); err != nil {
		return Manifest{}, fmt.Errorf("release %s: %w", v.Tag(), err)
	}
	raw, err := os.ReadFile(s.ManifestPath(v))
	if errors.Is(err, fs.ErrNotExist) {
		return s.adopt(v)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("release %s: %w", v.Tag(), err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Manifest{}, fmt.Errorf("release %s: %s is not valid JSON: %w", v.Tag(), s.ManifestPath(v), err)
	}
	if m.Version != v.String() {
		return Manifest{}, fmt.Errorf("release %s: %s names version %q", v.Tag(), s.ManifestPath(v), m.Version)
	}
	sum, err := fileSHA256(bin)
	if err != nil {
		return Manifest{}, fmt.Errorf("release %s: %w", v.Tag(), err)
	}
	if !strings.EqualFold(sum, m.SHA256) {
		return Manifest{}, fmt.Errorf("release %s: %s has sha256 %s, its manifest says %s", v.Tag(), bin, sum, m.SHA256)
	}
	return m, nil
}

func (s *Store) adopt(v chain.Version) (Manifest, error) {
	bin := s.BinPath(v)
	sum, err := fileSHA256(bin)
	if err != nil {
		return Manifest{}, fmt.Errorf("release %s: %w", v.Tag(), err)
	}
	m := Manifest{
		Version:   v.String(),
		SHA256:    sum,
		Source:    SourceLocal,
		FetchedAt: time.Now().UTC(),
	}
	if s.ReadOnly {
		return m, nil
	}
	m.ReportedVersion = s.reportedVersion(context.Background(), bin)
	log := s.log().WithFields(logrus.Fields{"release": v.Tag(), "sha256": sum, "reported_version": m.ReportedVersion})
	if m.ReportedVersion != v.String() {
		log.Warn("hand-placed lavap does not report its folder's version; the folder's tag is what counts")
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	if err := WriteFileAtomic(s.ManifestPath(v), append(data, '\n'), 0o644); err != nil {
		return Manifest{}, fmt.Errorf("release %s: adopt: %w", v.Tag(), err)
	}
	log.Info("adopted hand-placed release")
	return m, nil
}

// Prune removes whole release folders, keeping the newest keep releases and every
// protected one (current, the rollback release). It returns what it removed.
// Note for a shared releases folder: another instance may still run a release
// pruned here.
func (s *Store) Prune(keep int, protect ...chain.Version) ([]chain.Version, error) {
	vs := s.List()
	var removed []chain.Version
	var errs []error
	for i, v := range vs {
		if i >= len(vs)-keep || slices.Contains(protect, v) {
			continue
		}
		if err := os.RemoveAll(s.ReleaseDir(v)); err != nil {
			errs = append(errs, fmt.Errorf("prune %s: %w", v.Tag(), err))
			continue
		}
		s.log().WithField("release", v.Tag()).Info("pruned old release")
		removed = append(removed, v)
	}
	if len(removed) > 0 {
		if err := syncDir(s.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// CleanTemp removes what a crashed earlier fetch left (.tmp-* entries). Call it
// holding <Dir>/.lock, or it may remove a live fetch's files.
func (s *Store) CleanTemp() error {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return fmt.Errorf("clean %s: %w", s.Dir, err)
	}
	var errs []error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tempPrefix) {
			continue
		}
		p := filepath.Join(s.Dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("clean %s: %w", p, err))
			continue
		}
		s.log().WithField("path", p).Info("removed a leftover of an interrupted download")
	}
	return errors.Join(errs...)
}

// CleanTempIfIdle removes leftovers of interrupted downloads at start when
// no other instance sharing the folder is fetching now (its lock is free);
// otherwise the next fetch removes them, under the lock.
func (s *Store) CleanTempIfIdle() {
	if s.ReadOnly {
		return
	}
	if left, _ := filepath.Glob(filepath.Join(s.Dir, tempPrefix+"*")); len(left) == 0 {
		return // nothing to clean: not even the lock file is made
	}
	l, err := TryLock(s.lockPath())
	if err != nil {
		return
	}
	defer l.Unlock()
	if err := s.CleanTemp(); err != nil {
		s.log().WithError(err).Warn("remove leftovers of interrupted downloads")
	}
}

func (s *Store) lockPath() string { return filepath.Join(s.Dir, lockName) }

func (s *Store) reportedVersion(ctx context.Context, bin string) string {
	if s.VersionTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.VersionTimeout)
		defer cancel()
	}
	return reportedVersion(ctx, s.Output, bin)
}

func (s *Store) log() *logrus.Entry {
	if s.Log != nil {
		return s.Log
	}
	return discardLog()
}

// discardLog stands in for a missing *logrus.Entry so that a zero Store works.
func discardLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// checkBinary says why path cannot be a release's lavap, or nil.
func checkBinary(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("no %s in the folder", filepath.Base(path))
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%s is a directory, not a binary", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	case fi.Size() == 0:
		return fmt.Errorf("%s is empty", path)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not executable (mode %04o)", path, fi.Mode().Perm())
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// maxVersionOutput bounds what is read of `<bin> version`.
const maxVersionOutput = 4096

// ReportedVersion runs `<bin> version` (no shell, stdin /dev/null, bounded
// output) until ctx ends (DefaultVersionTimeout when ctx has no deadline), and returns the first
// line of its output trimmed, or "" when the command is missing, fails or times
// out. It is recorded, never trusted: real releases print a number that can lag
// their tag, and old ones have no version command.
func ReportedVersion(ctx context.Context, bin string) string {
	return reportedVersion(ctx, nil, bin)
}

func reportedVersion(ctx context.Context, output OutputFunc, bin string) string {
	if output == nil {
		output = func(ctx context.Context, _ int, name string, _ ...string) ([]byte, error) {
			return runVersion(ctx, name)
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultVersionTimeout)
		defer cancel()
	}
	// A freshly written binary can be "text file busy" for a moment: a fork in
	// another goroutine may still hold the write fd until its exec.
	for attempt := 0; ; attempt++ {
		out, err := output(ctx, maxVersionOutput, bin, "version")
		if errors.Is(err, syscall.ETXTBSY) && attempt < 20 {
			select {
			case <-ctx.Done():
				return ""
			case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return ""
		}
		line, _, _ := strings.Cut(string(out), "\n")
		line = strings.TrimSpace(line)
		if len(line) > 100 {
			line = line[:100]
		}
		return strings.ToValidUTF8(line, "?")
	}
}

// OutputFunc runs a program and returns its stdout, at most limit bytes. Under
// LavaVisor's reaper (PID 1 or subreaper) it must be the reaper's, so that no
// second waiter races it for exit statuses.
type OutputFunc func(ctx context.Context, limit int, name string, args ...string) ([]byte, error)

func runVersion(ctx context.Context, bin string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, "version")
	var out limitedBuffer
	out.max = maxVersionOutput
	cmd.Stdout = &out
	// A grandchild holding stdout must not keep us waiting past the timeout.
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	// As PID 1 or a subreaper, LavaVisor's own reaper may collect this child's
	// status first (ECHILD); the output read is still good then.
	if errors.Is(err, syscall.ECHILD) && ctx.Err() == nil {
		err = nil
	}
	return out.Bytes(), err
}

// limitedBuffer keeps the first max bytes written and drops the rest, so a
// chatty binary cannot fill memory.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// Remove deletes the folder of release v: one pre-fetched for a proposal that
// was rejected. The caller makes sure it is not running nor needed.
func (s *Store) Remove(v chain.Version) error {
	if err := os.RemoveAll(s.ReleaseDir(v)); err != nil {
		return fmt.Errorf("remove %s: %w", v.Tag(), err)
	}
	return syncDir(s.Dir)
}
