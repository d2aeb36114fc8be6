package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Exit is how a child ended, as wait4 reported it.
type Exit struct {
	Status syscall.WaitStatus
}

// Code is the shell convention: the exit code, or 128+N when killed by signal N.
func (e Exit) Code() int {
	if e.Status.Signaled() {
		return 128 + int(e.Status.Signal())
	}
	return e.Status.ExitStatus()
}

func (e Exit) String() string {
	if e.Status.Signaled() {
		return fmt.Sprintf("killed by %s", unix.SignalName(e.Status.Signal()))
	}
	return fmt.Sprintf("exit code %d", e.Status.ExitStatus())
}

// Reaper is the one waiter for all children of this process. It reaps with
// wait4(-1), so orphans re-parented to us (as PID 1, or as a child subreaper)
// never stay zombies, and hands each exit status to whoever started that pid.
// Nothing else in the process may wait for a child while it runs: exec.Cmd.Wait
// would race it for exit statuses. Children are forked by one goroutine locked
// to its OS thread for the reaper's whole life, because the parent-death signal
// fires when the forking thread (not the process) ends.
type Reaper struct {
	log    *logrus.Entry
	mu     sync.Mutex
	owners map[int]chan Exit
	forks  chan forkRequest
	sigc   chan os.Signal
	orphan func(pid int, e Exit)
}

type forkRequest struct {
	cmd  *exec.Cmd
	done chan forkResult
}

type forkResult struct {
	exit <-chan Exit
	err  error
}

// NewReaper makes this process a child subreaper unless it is PID 1 (which
// is one already) and starts watching SIGCHLD. Run must be called.
func NewReaper(log *logrus.Entry) (*Reaper, error) {
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("become child subreaper: %w", err)
		}
	}
	r := &Reaper{
		log:    log,
		owners: make(map[int]chan Exit),
		forks:  make(chan forkRequest),
		sigc:   make(chan os.Signal, 1),
	}
	signal.Notify(r.sigc, syscall.SIGCHLD)
	return r, nil
}

// OnOrphan sets a callback for reaped pids nobody started (tests, metrics).
func (r *Reaper) OnOrphan(fn func(pid int, e Exit)) { r.orphan = fn }

// Run reaps and forks until ctx is done. It must outlive every child it
// started: when it returns, the forking thread exits and so its children get
// their parent-death signal.
func (r *Reaper) Run(ctx context.Context) {
	go r.forker(ctx)
	defer signal.Stop(r.sigc)
	r.reap() // a child may have ended before Notify
	for {
		select {
		case <-ctx.Done():
			r.reap()
			return
		case <-r.sigc:
			r.reap()
		}
	}
}

func (r *Reaper) forker(ctx context.Context) {
	// Never unlocked: the thread dies with this goroutine, which is what the
	// children's parent-death signal is tied to.
	runtime.LockOSThread()
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-r.forks:
			req.done <- r.fork(req.cmd)
		}
	}
}

func (r *Reaper) fork(cmd *exec.Cmd) forkResult {
	exit := make(chan Exit, 1)
	// Holding mu across the fork: a child that dies at once is reaped by reap,
	// which needs mu to look up its owner, so it always finds this one.
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return forkResult{err: err}
	}
	r.owners[cmd.Process.Pid] = exit
	return forkResult{exit: exit}
}

// Start starts cmd (which must not be waited for by anyone else) and returns
// a channel that receives its exit status once. cmd.SysProcAttr gets
// Pdeathsig SIGKILL.
func (r *Reaper) Start(ctx context.Context, cmd *exec.Cmd) (<-chan Exit, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	req := forkRequest{cmd: cmd, done: make(chan forkResult, 1)}
	select {
	case r.forks <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := <-req.done
	return res.exit, res.err
}

func (r *Reaper) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		owner, ok := r.owners[pid]
		delete(r.owners, pid)
		r.mu.Unlock()
		if ok {
			owner <- Exit{Status: ws}
			continue
		}
		r.log.WithField("pid", pid).Debug("reaped orphan")
		if r.orphan != nil {
			r.orphan(pid, Exit{Status: ws})
		}
	}
}

// Output runs name with args through the reaper (exec.Cmd.Run would race it
// for the exit status) and returns up to limit bytes of its stdout. Its stdin
// is /dev/null; when ctx ends its process group is killed.
func (r *Reaper) Output(ctx context.Context, limit int, name string, args ...string) ([]byte, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout = pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	exit, err := r.Start(ctx, cmd)
	pw.Close()
	if err != nil {
		return nil, err
	}
	defer cmd.Process.Release()
	type read struct {
		b   []byte
		err error
	}
	got := make(chan read, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(pr, int64(limit)))
		io.Copy(io.Discard, pr) // a chatty child must not block on a full pipe
		got <- read{b, err}
	}()
	var e Exit
	select {
	case e = <-exit:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exit
		return nil, ctx.Err()
	}
	// A grandchild holding stdout must not keep us past the exit for long.
	pr.SetReadDeadline(time.Now().Add(time.Second))
	out := <-got
	if e.Code() != 0 {
		return out.b, fmt.Errorf("%s: %s", name, e)
	}
	return out.b, nil
}
