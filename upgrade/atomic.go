package upgrade

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// tempPrefix starts the name of every temporary file or folder this package
// makes, so that one left by a crash is recognised and removed (Store.CleanTemp).
const tempPrefix = ".tmp-"

// WriteFileAtomic replaces path with data: a reader sees the old file or the new
// one, never a part. On failure path is unchanged and no temporary file remains.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPrefix+base+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// SwapSymlink points linkPath at target atomically: the link is made under a
// temporary name in the same folder and renamed over linkPath, so linkPath is
// never missing. A regular file at linkPath (an operator's own lavap) is kept as
// "<name>.bak" beside it, or "<name>.bak.N" when that exists: never deleted.
// A directory at linkPath is an error.
func SwapSymlink(linkPath, target string) error {
	_, err := SwapSymlinkBackup(linkPath, target)
	return err
}

// SwapSymlinkBackup is SwapSymlink that also returns the name the regular file
// found at linkPath was kept under ("" when there was none), for the log.
func SwapSymlinkBackup(linkPath, target string) (string, error) {
	dir := filepath.Dir(linkPath)
	fi, err := os.Lstat(linkPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fi = nil
	case err != nil:
		return "", fmt.Errorf("link %s: %w", linkPath, err)
	case fi.IsDir():
		return "", fmt.Errorf("link %s: a directory is in the way (it is not replaced: move it away)", linkPath)
	case fi.Mode()&fs.ModeSymlink != 0:
		if cur, err := os.Readlink(linkPath); err == nil && cur == target {
			return "", nil
		}
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("link %s: a %s is in the way", linkPath, fi.Mode().Type())
	}

	tmp, err := symlinkTemp(dir, filepath.Base(linkPath), target)
	if err != nil {
		return "", fmt.Errorf("link %s: %w", linkPath, err)
	}
	var bak string
	var moved bool
	if fi != nil && fi.Mode().IsRegular() {
		bak, moved, err = backup(linkPath)
		if err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("link %s: keep the file there: %w", linkPath, err)
		}
	}
	if err := os.Rename(tmp, linkPath); err != nil {
		os.Remove(tmp)
		if moved {
			_ = os.Rename(bak, linkPath)
		}
		return "", fmt.Errorf("link %s: %w", linkPath, err)
	}
	if err := syncDir(dir); err != nil {
		return bak, fmt.Errorf("link %s: %w", linkPath, err)
	}
	return bak, nil
}

// backup gives the regular file at path the name "<path>.bak", or the first free
// "<path>.bak.N"; an older backup is never overwritten. A hard link keeps path in
// place until the new symlink is renamed over it, so there is no moment without a
// lavap. Where hard links are refused (protected_hardlinks, some file systems)
// the file is renamed instead (moved reports that), never overwriting.
func backup(path string) (bak string, moved bool, err error) {
	useRename := false
	for i := 0; i < 1000; i++ {
		bak = path + ".bak"
		if i > 0 {
			bak += "." + strconv.Itoa(i)
		}
		if useRename {
			err = unix.Renameat2(unix.AT_FDCWD, path, unix.AT_FDCWD, bak, unix.RENAME_NOREPLACE)
		} else {
			err = os.Link(path, bak)
		}
		switch {
		case err == nil:
			return bak, useRename, syncDir(filepath.Dir(path))
		case errors.Is(err, fs.ErrExist):
			continue
		case !useRename:
			useRename = true
			i--
			continue
		default:
			return "", false, err
		}
	}
	return "", false, fmt.Errorf("no free name for a backup of %s", path)
}

func symlinkTemp(dir, base, target string) (string, error) {
	for i := 0; ; i++ {
		tmp := filepath.Join(dir, tempPrefix+base+"-"+randomSuffix())
		err := os.Symlink(target, tmp)
		if err == nil {
			return tmp, nil
		}
		if !errors.Is(err, fs.ErrExist) || i >= 10 {
			return "", err
		}
	}
}

func randomSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// syncDir makes a rename or a new entry in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// SyncDir fsyncs the folder dir, so that a rename or link made in it
// survives a crash.
func SyncDir(dir string) error { return syncDir(dir) }
