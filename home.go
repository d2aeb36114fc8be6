package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/chain"
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

// current resolves the `current` link once: the release folder it points at
// and its tag. A later swap of the link does not change what this returned.
func (h home) current() (dir string, tag string, err error) {
	dir, err = filepath.EvalSymlinks(h.currentLink())
	if err != nil {
		return "", "", &errNoCurrent{link: h.currentLink(), err: err}
	}
	bin := filepath.Join(dir, "lavap")
	fi, err := os.Stat(bin)
	if err != nil {
		return "", "", &errNoCurrent{link: h.currentLink(), err: err}
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", "", &errNoCurrent{link: h.currentLink(), err: fmt.Errorf("%s is not an executable file", bin)}
	}
	return dir, filepath.Base(dir), nil
}

// currentVersion is the version of the linked release, from its folder's tag.
func (h home) currentVersion() (chain.Version, error) {
	_, tag, err := h.current()
	if err != nil {
		return chain.Version{}, err
	}
	return chain.ParseTag(strings.TrimSpace(tag))
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
