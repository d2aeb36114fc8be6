package upgrade

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTryLockHeldByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	cmd := helperCmd(t, "hold-lock", "LOCK_PATH="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v", line, err)
	}

	_, err = TryLock(path)
	want := fmt.Sprintf("%s is held by pid %d", path, cmd.Process.Pid)
	if err == nil || err.Error() != want {
		t.Fatalf("TryLock error = %v, want %q", err, want)
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error does not match ErrLocked")
	}
	var le *LockedError
	if !errors.As(err, &le) || le.PID != cmd.Process.Pid {
		t.Errorf("LockedError = %+v", le)
	}

	// WaitLock gets it once the holder lets go.
	got := make(chan error, 1)
	go func() {
		l, err := WaitLock(context.Background(), path)
		if err == nil {
			err = l.Unlock()
		}
		got <- err
	}()
	stdin.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("WaitLock: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitLock did not get the freed lock")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

func TestTryLockTwiceInOneProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = TryLock(path)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "is held by pid") {
		t.Fatalf("second TryLock: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := TryLock(path)
	if err != nil {
		t.Fatalf("TryLock after Unlock: %v", err)
	}
	l2.Unlock()
}

func TestWaitLockCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	l, err := TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = WaitLock(ctx, path)
	if !errors.Is(err, ErrLocked) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitLock = %v, want locked and deadline exceeded", err)
	}
}

func TestLockInMissingFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "lock")
	_, err := TryLock(path)
	if err == nil || !strings.Contains(err.Error(), "no such file") || errors.Is(err, ErrLocked) {
		t.Fatalf("TryLock = %v", err)
	}
	_, err = WaitLock(context.Background(), path)
	if err == nil || errors.Is(err, ErrLocked) {
		t.Fatalf("WaitLock = %v", err)
	}
}

// A lock planted as a symlink to another file is refused, and the file it
// points at is left exactly as it was (it used to be truncated).
func TestLockRefusesSymlinkAndHardLink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(dir, "lock")
	os.Symlink(victim, lock)
	if l, err := TryLock(lock); err == nil || !errors.Is(err, ErrLockFile) || !strings.Contains(err.Error(), "symlink") || !strings.Contains(err.Error(), lock) {
		l.Unlock()
		t.Errorf("symlink: err = %v", err)
	}
	if _, err := WaitLock(context.Background(), lock); err == nil || !errors.Is(err, ErrLockFile) {
		t.Errorf("WaitLock through a symlink: err = %v", err)
	}
	// A dangling link is not followed to create its target either.
	dangling := filepath.Join(dir, "dangling")
	os.Symlink(filepath.Join(dir, "made"), dangling)
	if _, err := TryLock(dangling); !errors.Is(err, ErrLockFile) {
		t.Errorf("dangling symlink: err = %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "made")); err == nil {
		t.Error("a dangling lock link made its target")
	}
	os.Remove(lock)
	if err := os.Link(victim, lock); err != nil {
		t.Fatal(err)
	}
	if _, err := TryLock(lock); !errors.Is(err, ErrLockFile) || !strings.Contains(err.Error(), "hard links") {
		t.Errorf("hard link: err = %v", err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "root:secret\n" {
		t.Errorf("victim changed: %q", b)
	}
}

func TestLockRefusesAnotherUsersFile(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	lock := filepath.Join(t.TempDir(), "lock")
	os.WriteFile(lock, []byte("x\n"), 0o666)
	os.Chown(lock, 65534, 65534)
	if _, err := TryLock(lock); !errors.Is(err, ErrLockFile) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("err = %v", err)
	}
	if b, _ := os.ReadFile(lock); string(b) != "x\n" {
		t.Errorf("lock file written: %q", b)
	}
}

// The pid is written in place at a fixed width and blanked on unlock; the
// file is never truncated.
func TestLockWritesPIDInPlace(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "lock")
	old := strings.Repeat("9", 40) + "\ntail\n" // left by something else
	os.WriteFile(lock, []byte(old), 0o600)
	l, err := TryLock(lock)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(lock)
	want := fmt.Sprintf("%10d\n", os.Getpid())
	if !strings.HasPrefix(string(b), want) || len(b) != len(old) {
		t.Errorf("held: %q, want %q at the start and length %d", b, want, len(old))
	}
	f, _ := os.Open(lock)
	if pid := readPID(f); pid != os.Getpid() {
		t.Errorf("readPID = %d", pid)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if pid := readPID(f); pid != 0 {
		t.Errorf("after unlock readPID = %d", pid)
	}
	f.Close()
	if b, _ := os.ReadFile(lock); len(b) != len(old) || !strings.HasPrefix(string(b), strings.Repeat(" ", 10)+"\n") {
		t.Errorf("after unlock: %q", b)
	}
}
