package upgrade

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/lavavisor/lavavisor/chain"
)

// Installer makes a release usable and links it: the releases folder, the
// fetcher (nil when auto-download is off), `current` and the system-path link.
type Installer struct {
	Store       *Store
	Fetcher     *Fetcher // nil: never download
	CurrentLink string   // <home>/current
	SystemLink  string   // absolute path of the system-path link; "": none
	Log         *logrus.Entry
}

// ErrNoRelease says that no candidate could be had.
var ErrNoRelease = errors.New("no usable release")

// Obtain returns the first candidate that is usable in the releases folder or,
// when downloads are allowed, fetched and verified. It changes no link.
func (in *Installer) Obtain(ctx context.Context, candidates []chain.Version) (chain.Version, Manifest, error) {
	var errs []error
	for _, v := range candidates {
		m, err := in.Store.Verify(v)
		if err == nil {
			return v, m, nil
		}
		if in.Fetcher == nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.Tag(), err))
			continue
		}
		m, err = in.Fetcher.Fetch(ctx, in.Store, v)
		if err == nil {
			return v, m, nil
		}
		errs = append(errs, err) // it names the release: "fetch lavap v6.2.6: ..."
		if ctx.Err() != nil {
			break
		}
	}
	names := make([]string, len(candidates))
	for i, v := range candidates {
		names[i] = v.String()
	}
	hint := ""
	if in.Fetcher == nil {
		hint = " and auto-download is off (--auto-download or auto-download: true)"
	}
	return chain.Version{}, Manifest{}, fmt.Errorf("%w for %s in %s%s: %w",
		ErrNoRelease, strings.Join(names, ", "), in.Store.Dir, hint, errors.Join(errs...))
}

// LinkCurrent points `current` (relative) at v, swapped atomically.
func (in *Installer) LinkCurrent(v chain.Version) error {
	rel, err := filepath.Rel(filepath.Dir(in.CurrentLink), in.Store.ReleaseDir(v))
	if err != nil {
		rel = in.Store.ReleaseDir(v)
	}
	if err := SwapSymlink(in.CurrentLink, rel); err != nil {
		return fmt.Errorf("link current to %s: %w", v.Tag(), err)
	}
	return nil
}

// LinkSystem points the system-path link (absolute) at v's binary, swapped
// atomically; nothing without one. It is a convenience for the operator's
// shell, never a step of an upgrade (SPEC §6.8 point 4).
func (in *Installer) LinkSystem(v chain.Version) error {
	if in.SystemLink == "" {
		return nil
	}
	backup, err := SwapSymlinkBackup(in.SystemLink, in.Store.BinPath(v))
	if err != nil {
		return fmt.Errorf("link %s to %s: %w", in.SystemLink, v.Tag(), err)
	}
	if backup != "" {
		in.Log.WithFields(logrus.Fields{"file": in.SystemLink, "kept_as": backup}).Warn("a regular file was at the system-path link; it was kept, renamed")
	}
	return nil
}

// Current is the release `current` points at, or the zero version if none.
func (in *Installer) Current() (chain.Version, error) {
	_, tag, err := CurrentRelease(in.CurrentLink)
	if err != nil {
		return chain.Version{}, err
	}
	return chain.ParseTag(tag)
}

// CurrentRelease reads the `current` link one level (SPEC §2): the release
// folder it names and that folder's name, the release's tag. A folder that is
// itself a symlink is not a release: resolving it further would name the
// release after wherever the link leads.
func CurrentRelease(link string) (dir, tag string, err error) {
	target, err := os.Readlink(link)
	if err != nil {
		return "", "", err
	}
	dir = target
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(link), target)
	}
	fi, err := os.Lstat(dir)
	switch {
	case err != nil:
		return "", "", err
	case fi.Mode()&fs.ModeSymlink != 0:
		return "", "", fmt.Errorf("release folder %s is a symlink, not a release: place the release in a real folder", dir)
	case !fi.IsDir():
		return "", "", fmt.Errorf("%s is not a release folder", dir)
	}
	return dir, filepath.Base(filepath.Clean(dir)), nil
}

// SystemLinkPath resolves the `link` setting: "none" gives "", "auto" the
// lavap found on PATH, else ~/go/bin/lavap; anything else is taken as is.
// With "auto", a lavap on PATH in a folder LavaVisor cannot write (a
// root-owned /usr/local/bin for a non-root LavaVisor) is skipped, with a
// warning to log: the link is a convenience and must never fail an upgrade.
func SystemLinkPath(setting string) (path, warning string, err error) {
	switch setting {
	case "none":
		return "", "", nil
	case "", "auto":
		if p, err := exec.LookPath("lavap"); err == nil {
			abs, err := filepath.Abs(p)
			if err != nil {
				return "", "", fmt.Errorf("link: auto: %w", err)
			}
			if unix.Access(filepath.Dir(abs), unix.W_OK) != nil {
				return "", fmt.Sprintf("link: auto: the lavap on PATH (%s) is in a folder this user cannot write; it is left alone and no system-path link is made (set link: to a path you can write, or none)", abs), nil
			}
			return abs, "", nil
		}
		home, err := os.UserHomeDir()
		if err != nil {
			return "", "", fmt.Errorf("link: auto: %w", err)
		}
		dir := filepath.Join(home, "go", "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", "", fmt.Errorf("link: auto: %w", err)
		}
		return filepath.Join(dir, "lavap"), "", nil
	}
	return setting, "", nil
}
