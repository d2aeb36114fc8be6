package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/upgrade"
)

// home is the .lavavisor folder of SPEC §2.
type home struct {
	root string // DIR/.lavavisor
}

func newHome(dir string) home { return home{root: filepath.Join(dir, ".lavavisor")} }

func (h home) path(name string) string { return filepath.Join(h.root, name) }
func (h home) configFile() string      { return h.path("config.yml") }
func (h home) lockFile() string        { return h.path("lock") }
func (h home) configLock() string      { return h.path("config.lock") }
func (h home) currentLink() string     { return h.path("current") }
func (h home) stateFile() string       { return h.path("state.json") }
func (h home) socket() string          { return h.path("lavavisor.sock") }

// lock takes the home's flock. Only a lock held by another instance means
// the home is in use; a refused lock file or a permission problem says so.
func (h home) lock() (*upgrade.Lock, error) {
	l, err := upgrade.TryLock(h.lockFile())
	switch {
	case err == nil:
		return l, nil
	case errors.Is(err, upgrade.ErrLocked):
		return nil, fmt.Errorf("home %s is in use: %w", h.root, err)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("cannot take the lock of home %s: %w: run LavaVisor as the home's owner, or give it write access to %s", h.root, err, h.root)
	}
	return nil, err
}

// releasesDir is the releases-dir setting, or <home>/upgrades.
func (h home) releasesDir(setting string) string {
	if setting == "" {
		return h.path("upgrades")
	}
	return setting
}

// errNoCurrent says that no release is linked yet.
type errNoCurrent struct {
	link string
	err  error
}

func (e *errNoCurrent) Error() string {
	return fmt.Sprintf("no lavap release linked at %s (%v): run `lavavisor init` to fetch and link one, or place a release by hand (README: \"Placing a release by hand\")", e.link, e.err)
}

// current reads the `current` link once, one level: the release folder it
// points at and its tag, the folder's name. A later swap of the link does not change what this returned.
func (h home) current() (dir string, tag string, err error) {
	dir, tag, err = upgrade.CurrentRelease(h.currentLink())
	if err != nil {
		return "", "", &errNoCurrent{link: h.currentLink(), err: err}
	}
	bin := filepath.Join(dir, "lavap")
	fi, err := os.Lstat(bin)
	if err != nil {
		return "", "", &errNoCurrent{link: h.currentLink(), err: err}
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", "", &errNoCurrent{link: h.currentLink(), err: fmt.Errorf("%s is not an executable file", bin)}
	}
	return dir, tag, nil
}

// lavapBinary resolves `current` at each start of a service.
func (h home) lavapBinary() (string, string, error) {
	dir, tag, err := h.current()
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "lavap"), tag, nil
}

// removeTemp removes what a killed instance left mid-write in the home
// (.tmp-* of atomic writes). Called under the home lock only.
func removeTemp(h home, log *logrus.Entry) {
	leftovers, _ := filepath.Glob(h.path(".tmp-*"))
	for _, p := range leftovers {
		if err := os.RemoveAll(p); err != nil {
			log.WithError(err).Warn("remove leftover temporary file")
			continue
		}
		log.WithField("file", p).Info("removed a temporary file left by an earlier instance")
	}
}

// checkSafe refuses a home that LavaVisor must not trust (SPEC §2, as ssh's
// StrictModes): its .lavavisor/, config.yml or releases folder (upgrades/ or
// releases-dir) being a symlink owned by another user, or, when LavaVisor runs
// as root, owned by another non-root user or writable by group or others:
// LavaVisor would run that user's `command:` and releases as root. Paths that
// do not exist yet pass: LavaVisor makes them itself.
func (h home) checkSafe(releasesDir string) error {
	var errs []error
	for _, p := range []string{h.root, h.configFile(), h.releasesDir(releasesDir)} {
		if err := checkTrusted(p, os.Geteuid(), runsAsRoot); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// The risks checkTrusted names: what another user could do as root through
// a path LavaVisor trusts.
const (
	runsAsRoot   = "it would run that user's commands and releases as root"
	writesAsRoot = "that user could link a log file to any file, and LavaVisor would write it as root"
)

// checkTrusted applies checkSafe's rules to one path; risk says what another
// user could do through it.
func checkTrusted(path string, euid int, risk string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	owner := func(fi fs.FileInfo) int { return int(fi.Sys().(*syscall.Stat_t).Uid) }
	if fi.Mode()&fs.ModeSymlink != 0 {
		if uid := owner(fi); uid != euid && uid != 0 {
			return fmt.Errorf("%s is a symlink owned by uid %d, not by LavaVisor's user (uid %d): LavaVisor does not follow it; replace it with a real folder, or `chown -h %d %s` if the link is yours", path, uid, euid, euid, shellQuote(path))
		}
		if fi, err = os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
	}
	if euid != 0 {
		return nil
	}
	if uid := owner(fi); uid != 0 {
		return fmt.Errorf("%s is owned by uid %d, and LavaVisor runs as root: %s. Fix: `chown root: %s`, or run LavaVisor as that user", path, uid, risk, shellQuote(path))
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o), and LavaVisor runs as root: anyone who can write it could act as root. Fix: `chmod go-w %s`", path, fi.Mode().Perm(), shellQuote(path))
	}
	return nil
}

// checkLogsDir vets logs-dir (SPEC §2, §9) before a log file is opened in it,
// and again before one is opened anew: the rotation library follows links, so
// the folder must be a real folder and, run as root, owned by root and not
// writable by group or others, so that nobody else can plant a link in it. A
// missing folder is made (0755), as it was removed or never made.
func checkLogsDir(dir string, euid int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("logs-dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("logs-dir: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("logs-dir %s is a symlink: LavaVisor does not write log files through links; set logs-dir to the folder it points at", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("logs-dir %s is not a directory", dir)
	}
	if err := checkTrusted(dir, euid, writesAsRoot); err != nil {
		return fmt.Errorf("logs-dir: %w", err)
	}
	return nil
}
