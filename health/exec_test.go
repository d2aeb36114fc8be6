package health

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// runExec is a real ExecFunc for tests, built as supervisor.(*Reaper).Output
// is: own process group, stdout only, at most limit bytes kept, the group
// killed when ctx ends, "<name>: exit code N" for a failure. It may use
// cmd.Wait because a test binary is not a reaper.
func runExec(ctx context.Context, limit int, name string, args ...string) ([]byte, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return nil, err
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(pr, int64(limit)))
		io.Copy(io.Discard, pr)
		got <- b
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		return nil, ctx.Err()
	}
	pr.SetReadDeadline(time.Now().Add(time.Second))
	out := <-got
	if err != nil {
		var ee *exec.ExitError
		if ok := asExitError(err, &ee); ok {
			ws := ee.Sys().(syscall.WaitStatus)
			if ws.Signaled() {
				return out, fmt.Errorf("%s: killed by %s", name, ws.Signal())
			}
			return out, fmt.Errorf("%s: exit code %d", name, ws.ExitStatus())
		}
		return out, err
	}
	return out, nil
}

func asExitError(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}
