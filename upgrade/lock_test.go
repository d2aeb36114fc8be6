package upgrade

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
