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
	_ = l.f.Truncate(0)
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

func openLockFile(path string) (*os.File, error) {
	// O_CLOEXEC (set by os.OpenFile) keeps the lock out of the services we start:
	// a child holding the fd would keep the lock after we die.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
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
	if err := writePID(f); err != nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return nil, fmt.Errorf("lock %s: write pid: %w", path, err)
	}
	return &Lock{f: f, path: path}, nil
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
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
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
