package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is matched (errors.Is) by the error of a lock held by another process.
var ErrLocked = errors.New("locked")

// LockedError says who holds a lock. PID is 0 when the holder had not written
// its pid yet (it writes it right after taking the lock).
type LockedError struct {
	Path string
	PID  int
}

func (e *LockedError) Error() string {
	if e.PID == 0 {
		return e.Path + " is held by another process"
	}
	return fmt.Sprintf("%s is held by pid %d", e.Path, e.PID)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Lock is an flock held on an open file. The lock dies with the process, so a
// SIGKILLed holder never leaves a stale lock behind; the pid in the file is only
// for the message of whoever finds it held.
type Lock struct {
	f    *os.File
	path string
}

// lockPoll is how often WaitLock retries. flock has no cancellable blocking
// form, and a lock held during a download is held for seconds, so polling costs
// nothing noticeable.
const lockPoll = 50 * time.Millisecond

// TryLock takes an exclusive flock on path (created 0600) without waiting.
// A symlink, a hard link or a file owned by another user at path is refused
// (errors.Is ErrLockFile) and never written.
// When another process holds it, the error is a *LockedError (errors.Is ErrLocked).
func TryLock(path string) (*Lock, error) {
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	l, err := tryFlock(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// WaitLock takes an exclusive flock on path, waiting until it is free or ctx ends.
func WaitLock(ctx context.Context, path string) (*Lock, error) {
	f, err := openLockFile(path)
	if err != nil {
		return nil, err
	}
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for {
		l, err := tryFlock(f, path)
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, ErrLocked) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for lock: %w (%w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// Unlock releases the lock. The pid is cleared first so that a stale pid is never
// reported for the next holder.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = clearPID(l.f)
	err := unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	if err != nil {
		return fmt.Errorf("unlock %s: %w", l.path, err)
	}
	return nil
}

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

// ErrLockFile is matched (errors.Is) by the error of a lock file that is not
// safe to use: a symlink, a hard link, not a regular file, or owned by another
// user. LavaVisor refuses it rather than write through it (SPEC §2).
var ErrLockFile = errors.New("unsafe lock file")

// openLockFile opens path without following a symlink, and checks what it
// opened: a home owned by someone else can plant `lock -> /etc/shadow`, and a
// root LavaVisor must not write into its target.
func openLockFile(path string) (*os.File, error) {
	// O_CLOEXEC keeps the lock out of the services we start: a child holding
	// the fd would keep the lock after we die.
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.ELOOP {
		return nil, fmt.Errorf("lock %s: %w: it is a symlink; remove it (LavaVisor never writes through a link here)", path, ErrLockFile)
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, &os.PathError{Op: "open", Path: path, Err: err})
	}
	f := os.NewFile(uintptr(fd), path)
	if err := checkLockFile(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkLockFile checks the opened lock file with fstat: a regular file, one
// link (a hard link to another file would be written through) and ours.
func checkLockFile(f *os.File, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("lock %s: %w: not a regular file; remove it", path, ErrLockFile)
	case st.Nlink != 1:
		return fmt.Errorf("lock %s: %w: it has %d hard links; remove it (LavaVisor never writes into a file linked elsewhere)", path, ErrLockFile, st.Nlink)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("lock %s: %w: owned by uid %d, LavaVisor runs as uid %d; remove it, or run as its owner", path, ErrLockFile, st.Uid, os.Geteuid())
	}
	return nil
}

func tryFlock(f *os.File, path string) (*Lock, error) {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EWOULDBLOCK {
			return nil, &LockedError{Path: path, PID: holderPID(f)}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := writePID(f); err != nil && !errors.Is(err, unix.ENOSPC) {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return nil, fmt.Errorf("lock %s: write pid: %w", path, err)
	}
	// On a full disk the lock holds without its pid (which only names the
	// holder in a second instance's message): a full disk must not keep the
	// services from starting.
	return &Lock{f: f, path: path}, nil
}

// pidWidth is the fixed width of the pid in the lock file: it is written in
// place (pwrite at offset 0), never by truncating, so a file of any length
// never loses more than these bytes, and a reader never sees it half empty.
const pidWidth = 10

func writePID(f *os.File) error {
	_, err := unix.Pwrite(int(f.Fd()), fmt.Appendf(nil, "%*d\n", pidWidth, os.Getpid()), 0)
	return err
}

// clearPID blanks the pid in place.
func clearPID(f *os.File) error {
	_, err := unix.Pwrite(int(f.Fd()), []byte(strings.Repeat(" ", pidWidth)+"\n"), 0)
	return err
}

// holderPID reads the holder's pid, giving a holder that has just taken the
// lock a moment to write it.
func holderPID(f *os.File) int {
	for i := 0; i < 10; i++ {
		if pid := readPID(f); pid != 0 {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

func readPID(f *os.File) int {
	buf := make([]byte, pidWidth+1)
	n, _ := f.ReadAt(buf, 0)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
