package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/lavavisor/lavavisor/health"
)

// RestartPolicy says when a service that ended by itself is started again.
type RestartPolicy string

const (
	RestartAlways    RestartPolicy = "always"
	RestartOnFailure RestartPolicy = "on-failure"
	RestartNever     RestartPolicy = "never"
)

// Spec is what to run for one service and how to treat it.
type Spec struct {
	Name string
	// Command is the program, or "" for the current lavap release: then Binary
	// resolves it. It is part of the service's identity on reload.
	Command string
	// Binary returns the program and the release it belongs to; it is called
	// once per start, so a swapped `current` applies at the next start only.
	Binary      func() (path, release string, err error)
	Args        []string
	Env         []string // added to the inherited environment
	Dir         string
	Stdin       []byte // written to stdin at each start, then closed; nil: /dev/null
	StopSignal  syscall.Signal
	StopTimeout time.Duration
	MinUptime   time.Duration
	Restart     RestartPolicy
	// Upgradable marks a service that runs the current lavap release.
	Upgradable bool
	// Health is how to ask the service whether it serves (SPEC §7); zero:
	// it counts as healthy while it runs.
	Health health.Spec
	// Probation puts the first process on probation, as Restart does: an exit
	// before MinUptime goes to Service.FirstEarly and is not restarted. For a
	// start on a release that was linked just before (SPEC §5, at start).
	Probation bool
}

// sameProcess reports whether a and b run the same process: if not, a reload
// restarts the service.
func sameProcess(a, b Spec) bool {
	return a.Command == b.Command && a.Dir == b.Dir && string(a.Stdin) == string(b.Stdin) &&
		equalStrings(a.Args, b.Args) && equalStrings(a.Env, b.Env)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Backoff bounds the delay between restarts of a crashing service.
type Backoff struct {
	Min, Max time.Duration // 1s doubling to 1m
	Reset    time.Duration // a run this long resets the delay to Min
}

// DefaultBackoff is SPEC §5's: 1 s doubling to 1 min, reset after 1 min up.
var DefaultBackoff = Backoff{Min: time.Second, Max: time.Minute, Reset: time.Minute}

// Result is how a service ended for good.
type Result struct {
	Name string
	Exit *Exit // nil when it never ran or was stopped by us
	Err  error // set when it could not be started
	// Stopped is true when it ended because LavaVisor stopped it.
	Stopped bool
}

// Status is a service's state as `lavavisor status` shows it.
type Status struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	PID      int       `json:"pid"`
	Release  string    `json:"release"`
	Started  time.Time `json:"-"`
	Restarts int       `json:"restarts"`
	LastExit string    `json:"last_exit"`
	// LastExitCode is the code of LastExit (128+N when killed by signal N);
	// meaningless while LastExit is "".
	LastExitCode int `json:"-"`
	// Dropped counts the service's log lines lost to a blocked output.
	Dropped uint64 `json:"-"`
	// FileDropped counts the service's log lines lost to a blocked or
	// failing log file (logs-dir).
	FileDropped uint64 `json:"-"`
	// Health is the running process's health (SPEC §7): starting, healthy or
	// unhealthy; "" when no process runs. A service without a check is
	// healthy while it runs.
	Health         string `json:"-"`
	HealthError    string `json:"-"` // the last failed check's reason
	HealthFailures uint64 `json:"-"` // failed checks since LavaVisor started
	HealthChecked  bool   `json:"-"` // the service has a health check
	Upgradable     bool   `json:"-"` // runs the current lavap release
}

// Started is a process started on request (an upgrade's restart). Early
// receives its exit if it ends before MinUptime; the service then waits for
// the next Restart instead of applying its restart policy.
type Started struct {
	// Health watches the new process when the service has a check (nil
	// otherwise): probation waits for it to be healthy within its start period.
	Health      *health.Monitor
	HealthCheck string // the check, described for a failure's reason
	PID         int
	Release     string
	Early       <-chan Exit
	MinUptime   time.Duration
	// Gone is closed when the process is gone for any reason but an exit
	// reported on Early: stopped for another request (an operator's restart
	// or hold), replaced or removed by a reload, or, off probation, ended
	// by itself. Whoever waits on the process (its probation, `service
	// restart --wait-healthy`) then stops waiting for it.
	Gone <-chan struct{}
}

// Kinds of request to a service's run loop besides a restart.
const (
	reqRestart = iota
	reqHold    // stop it and keep it stopped (operator's `service stop`)
	reqUnhold  // start a held service (`service start`)
)

type restartRequest struct {
	kind      int
	probation bool
	reply     chan restartReply
}

type restartReply struct {
	started Started
	err     error
}

// Service runs one Spec's processes, one at a time, for as long as it lives.
type Service struct {
	log     *logrus.Entry
	reaper  *Reaper
	out     *Output
	backoff Backoff
	killc   <-chan struct{} // closed: stop with SIGKILL at once
	grace   time.Duration   // pipe grace after the child's exit

	restartc chan restartRequest
	// startMu is held from the fork of a process until it is the service's
	// proc: a signal forwarded meanwhile waits for it instead of finding no
	// process (the child may already run, and be seen running).
	startMu sync.Mutex
	first   chan Exit     // the first process's early exit, with Spec.Probation
	started chan struct{} // closed once the first start was tried
	// release resolves the lavap binary of an upgradable service's start.
	release func() (path, tag string, err error)

	mu       sync.Mutex
	spec     Spec
	proc     *proc
	state    string
	restarts int
	lastExit string
	lastCode int
	lastRel  string
	// Health: the failures of earlier processes' checks, and the channel on
	// which a monitor reports the states of the process it watches.
	healthFailures uint64
	healthc        chan healthChange
	exec           health.ExecFunc
}

type healthChange struct {
	m  *health.Monitor
	st health.Status
}

type proc struct {
	cmd       *exec.Cmd
	pid       int
	release   string
	started   time.Time
	exit      <-chan Exit
	pipes     sync.WaitGroup
	readers   []*os.File
	probation bool
	early     chan Exit
	health    *health.Monitor // nil without a check
	// gone is Started.Gone, closed by markGone.
	gone chan struct{}
}

// markGone tells whoever waits on p that it is gone (Started.Gone).
func (p *proc) markGone() {
	select {
	case <-p.gone:
	default:
		close(p.gone)
	}
}

func (s *Service) snapshot() Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.spec
}

func (s *Service) setState(state string) {
	s.mu.Lock()
	s.state = state
	s.mu.Unlock()
}

// Status reports the service's state.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{Name: s.spec.Name, State: s.state, Restarts: s.restarts, LastExit: s.lastExit, LastExitCode: s.lastCode,
		Release: s.lastRel, Dropped: s.out.Dropped(), FileDropped: s.out.FileDropped(), Upgradable: s.spec.Upgradable}
	st.HealthFailures = s.healthFailures
	st.HealthChecked = !s.spec.Health.IsZero()
	if s.proc != nil {
		st.PID, st.Started, st.Release = s.proc.pid, s.proc.started, s.proc.release
		st.Health = string(health.Healthy)
		if m := s.proc.health; m != nil {
			hs := m.Status()
			st.Health, st.HealthError = string(hs.State), hs.LastError
			st.HealthFailures += hs.Failures
		}
	}
	return st
}

// Name is the service's name.
func (s *Service) Name() string { return s.snapshot().Name }

// LastLines returns the last n lines the service logged (for error reports).
func (s *Service) LastLines(n int) []string { return s.out.LastLines(n) }

// Signal sends sig to the running process's group, if any, waiting for a
// process being started.
func (s *Service) Signal(sig syscall.Signal) error {
	s.startMu.Lock() // a process being started gets it too
	defer s.startMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	return signalGroup(s.proc.pid, sig)
}

func signalGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// update applies the settings that need no restart.
func (s *Service) update(spec Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spec.StopSignal, s.spec.StopTimeout = spec.StopSignal, spec.StopTimeout
	s.spec.MinUptime, s.spec.Restart = spec.MinUptime, spec.Restart
	if !reflect.DeepEqual(s.spec.Health, spec.Health) {
		// A new check applies at once to the running process.
		s.spec.Health = spec.Health
		if p := s.proc; p != nil {
			s.stopHealthLocked(p)
			p.health = s.newMonitor(spec.Health)
		}
	}
}

// newMonitor starts checking a new process; nil without a check. s.mu is
// held or the process is not yet visible.
func (s *Service) newMonitor(spec health.Spec) *health.Monitor {
	if spec.IsZero() {
		return nil
	}
	var m *health.Monitor
	ready := make(chan struct{})
	m = health.NewMonitor(spec, s.exec, health.RealClock{}, func(st health.Status) {
		<-ready
		if st.State == health.Unhealthy {
			s.log.WithFields(logrus.Fields{"check": spec.Describe(), "reason": st.LastError}).Warn("service unhealthy")
		} else if st.State == health.Healthy {
			s.log.WithField("check", spec.Describe()).Info("service healthy")
		}
		select {
		case s.healthc <- healthChange{m, st}:
		default: // the run loop reads the monitor's state itself when it acts
		}
	})
	close(ready)
	return m
}

// stopHealthLocked ends p's checks, keeping their failure count.
func (s *Service) stopHealthLocked(p *proc) {
	if p.health == nil {
		return
	}
	p.health.Stop()
	s.healthFailures += p.health.Status().Failures
	p.health = nil
}

func (s *Service) stopHealth(p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopHealthLocked(p)
}

// run supervises the service until ctx ends (graceful stop) or it ends for
// good. first, when set, is a restart request that the first start answers
// (a service changed by a reload while an upgrade wanted it restarted).
// replaced is closed when a reload replaces or removes the service.
func (s *Service) run(ctx context.Context, first *restartRequest, replaced <-chan struct{}, held bool) Result {
	name := s.snapshot().Name
	delay := s.backoff.Min
	var (
		p         *proc
		timer     <-chan time.Time
		unhealthy <-chan time.Time // restart-after, while unhealthy
	)
	if held {
		// Held by the operator across a reload or a restart of LavaVisor:
		// no process until `service start`.
		s.setState("held")
		if first != nil {
			first.reply <- restartReply{err: &goneError{name, "is held stopped by the operator (lavavisor service start " + name + ")"}}
		}
		first = nil
		close(s.started)
	}
	start := func() error {
		var err error
		p, err = s.start()
		if err != nil {
			s.log.WithError(err).Error("service failed to start")
		}
		return err
	}
	answer := func(req restartRequest, err error) {
		var reply restartReply
		if err != nil {
			reply.err = err
		} else {
			p.probation = req.probation
			p.early = make(chan Exit, 1)
			s.mu.Lock()
			m := p.health
			s.mu.Unlock()
			reply.started = Started{Health: m, HealthCheck: s.snapshot().Health.Describe(), PID: p.pid, Release: p.release, Early: p.early, MinUptime: s.snapshot().MinUptime, Gone: p.gone}
		}
		req.reply <- reply
	}
	if !held {
		err := start()
		close(s.started)
		if first != nil {
			answer(*first, err)
		}
		if err != nil {
			if !s.restartable(nil) {
				s.setState("failed")
				return Result{Name: name, Err: err}
			}
			timer = s.wait(&delay)
		} else if s.first != nil {
			p.probation, p.early = true, s.first
		}
	}
	for {
		var exitc <-chan Exit
		if p != nil {
			exitc = p.exit
		}
		select {
		case <-ctx.Done():
			if p != nil {
				select {
				case <-replaced: // detach closes it before it cancels ctx
					p.markGone() // not at shutdown: waiters see ctx end
				default:
				}
				s.stop(p)
			}
			s.setState("stopped")
			return Result{Name: name, Stopped: true}

		case e := <-exitc:
			unhealthy = nil
			uptime := time.Since(p.started)
			// With a check, probation lasts until the process was seen
			// healthy too: an exit before that is the new release failing.
			s.mu.Lock()
			healthyOnce := true
			if m := p.health; m != nil {
				select {
				case <-m.Healthy():
				default:
					healthyOnce = false
				}
			}
			s.mu.Unlock()
			s.finish(p, e)
			spec := s.snapshot()
			log := s.log.WithFields(logrus.Fields{"pid": p.pid, "uptime": uptime.Round(time.Millisecond).String()})
			if p.probation && (uptime < spec.MinUptime || !healthyOnce) {
				log.WithField("exit", e.String()).Error("service exited during its probation on a new release (before min-uptime, or before it was healthy)")
				p.early <- e
				// Held: no restart until the upgrader's next Restart (its rollback).
				p = nil
				s.setState("failed")
				continue
			}
			p.markGone()
			p = nil
			if !s.restartable(&e) {
				log.WithField("exit", e.String()).Info("service ended; restart policy says not to restart it")
				s.setState("exited")
				return Result{Name: name, Exit: &e}
			}
			if uptime >= s.backoff.Reset {
				delay = s.backoff.Min
			}
			log.WithField("exit", e.String()).Warn("service exited")
			timer = s.wait(&delay)

		case hc := <-s.healthc:
			s.mu.Lock()
			current := p != nil && p.health == hc.m
			after := s.spec.Health.RestartAfter
			s.mu.Unlock()
			if !current {
				continue // a result of a process that is gone: it belongs to that pid
			}
			// The monitor's state now, not the notice's: a notice may have
			// been dropped while an older one waited here.
			switch state := hc.m.Status().State; {
			case state == health.Unhealthy && after > 0 && unhealthy == nil:
				unhealthy = time.After(after)
			case state != health.Unhealthy:
				unhealthy = nil
			}

		case <-unhealthy:
			unhealthy = nil
			if p == nil || ctx.Err() != nil {
				continue
			}
			if sp := s.snapshot(); p.probation && time.Since(p.started) < max(sp.MinUptime, sp.Health.StartPeriod) {
				// Never during probation: the upgrade judges it and rolls
				// back; a restart here would hide the failure. Look again
				// when it is over.
				unhealthy = time.After(max(sp.MinUptime, sp.Health.StartPeriod) - time.Since(p.started))
				continue
			}
			s.mu.Lock()
			m := p.health
			after := s.spec.Health.RestartAfter
			s.mu.Unlock()
			if m == nil || m.Status().State != health.Unhealthy {
				continue
			}
			s.log.WithFields(logrus.Fields{"pid": p.pid, "restart_after": after.String(), "reason": m.Status().LastError}).Warn("service unhealthy for restart-after; restarting it")
			p.markGone()
			s.stop(p)
			p = nil
			timer = s.wait(&delay)

		case <-timer:
			timer = nil
			if ctx.Err() != nil {
				continue // stopping: nothing new starts
			}
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			if err := start(); err != nil {
				timer = s.wait(&delay)
			}

		case req := <-s.restartc:
			switch {
			case req.kind == reqRestart && held:
				req.reply <- restartReply{err: &goneError{name, "is held stopped by the operator (lavavisor service start " + name + ")"}}
				continue
			case req.kind == reqUnhold && !held:
				req.reply <- restartReply{err: fmt.Errorf("service %s is not held", name)}
				continue
			case req.kind == reqHold:
				if p != nil {
					p.markGone()
					s.stop(p)
					p = nil
				}
				timer, unhealthy, held = nil, nil, true
				s.setState("held")
				s.log.Info("service held stopped by the operator")
				req.reply <- restartReply{}
				continue
			}
			held = false
			if p != nil {
				p.markGone()
				s.stop(p)
				p = nil
			}
			timer, unhealthy = nil, nil
			if ctx.Err() != nil {
				// Stopped (shutdown or reload) while this restart waited
				// for the stop: it must not start a new process.
				req.reply <- restartReply{err: &goneError{name, "was stopped while restarting"}}
				s.setState("stopped")
				return Result{Name: name, Stopped: true}
			}
			delay = s.backoff.Min
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
			err := start()
			answer(req, err)
			if err != nil && s.restartable(nil) {
				timer = s.wait(&delay)
			} else if err != nil {
				s.setState("failed")
				return Result{Name: name, Err: err}
			}
		}
	}
}

// restartable applies the restart policy to an exit (nil: failed to start).
func (s *Service) restartable(e *Exit) bool {
	switch s.snapshot().Restart {
	case RestartNever:
		return false
	case RestartOnFailure:
		return e == nil || e.Code() != 0
	}
	return true
}

// wait returns the timer for the next start and doubles delay.
func (s *Service) wait(delay *time.Duration) <-chan time.Time {
	d := *delay
	*delay = min(2*d, s.backoff.Max)
	s.log.WithField("in", d.String()).Info("restarting service")
	s.setState("backoff")
	return time.After(d)
}

// pipeSize lets a fast child write several of its writes ahead while the pipe
// is being drained, and lets Pump read them in one call: fewer wake-ups for
// both. Linux caps it for unprivileged users at /proc/sys/fs/pipe-max-size.
const pipeSize = 1 << 20

// enlargePipe sets r's pipe buffer to pipeSize; the default (64 KiB) still
// works, so a refusal is ignored.
func enlargePipe(r *os.File) {
	// SyscallConn rather than Fd: Fd would switch the pipe to blocking mode,
	// and a blocked Read could no longer be ended by closing the pipe.
	if rc, err := r.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
}

func (s *Service) start() (*proc, error) {
	spec := s.snapshot()
	var path, release string
	var err error
	if spec.Upgradable && s.release != nil {
		path, release, err = s.release()
	}
	if path == "" && err == nil {
		path, release, err = spec.Binary()
	}
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	cmd := exec.Command(path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	enlargePipe(outR)
	enlargePipe(errR)
	cmd.Stdout, cmd.Stderr = outW, errW
	var inW *os.File
	if spec.Stdin != nil {
		var inR *os.File
		if inR, inW, err = os.Pipe(); err != nil {
			outR.Close()
			outW.Close()
			errR.Close()
			errW.Close()
			return nil, fmt.Errorf("start %s: %w", spec.Name, err)
		}
		cmd.Stdin = inR
		defer inR.Close()
	}
	s.startMu.Lock()
	defer s.startMu.Unlock()
	exit, err := s.reaper.Start(context.Background(), cmd)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if inW != nil {
			inW.Close()
		}
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, release: release, started: time.Now(), exit: exit, readers: []*os.File{outR, errR}, gone: make(chan struct{})}
	p.pipes.Add(2)
	go func() { defer p.pipes.Done(); s.out.Pump("stdout", outR) }()
	go func() { defer p.pipes.Done(); s.out.Pump("stderr", errR) }()
	if inW != nil {
		go func() {
			// The secret goes to the pipe only; a child that does not read it
			// gets EOF or SIGPIPE-free EPIPE, never a log line.
			inW.Write(append(spec.Stdin, '\n'))
			inW.Close()
		}()
	}
	s.mu.Lock()
	p.health = s.newMonitor(spec.Health)
	s.proc, s.state, s.lastRel = p, "running", release
	s.mu.Unlock()
	fields := logrus.Fields{"pid": p.pid}
	if release != "" {
		fields["release"] = release
	}
	s.log.WithFields(fields).Info("service started")
	return p, nil
}

// finish cleans up after the process p has exited with e.
func (s *Service) finish(p *proc, e Exit) {
	s.stopHealth(p)
	// The group's other members (the service's own children) go with it.
	signalGroup(p.pid, syscall.SIGKILL)
	p.cmd.Process.Release()
	// A grandchild outside the group may still hold the pipes: give it a
	// bounded grace, then stop reading.
	deadline := time.Now().Add(s.grace)
	for _, r := range p.readers {
		r.SetReadDeadline(deadline)
	}
	p.pipes.Wait()
	for _, r := range p.readers {
		r.Close()
	}
	s.mu.Lock()
	s.proc = nil
	s.lastExit, s.lastCode = e.String(), e.Code()
	s.mu.Unlock()
}

// stop ends p: its stop signal to the group, stop-timeout, SIGKILL.
func (s *Service) stop(p *proc) {
	spec := s.snapshot()
	log := s.log.WithFields(logrus.Fields{"pid": p.pid, "signal": unix.SignalName(spec.StopSignal)})
	s.setState("stopping")
	s.stopHealth(p) // checks pause while stopping
	select {
	case <-s.killc:
		signalGroup(p.pid, syscall.SIGKILL)
	default:
		log.WithField("timeout", spec.StopTimeout.String()).Info("stopping service")
		if err := signalGroup(p.pid, spec.StopSignal); err != nil {
			log.WithError(err).Warn("signal service")
		}
	}
	var e Exit
	timeout := time.NewTimer(spec.StopTimeout)
	defer timeout.Stop()
	select {
	case e = <-p.exit:
	case <-timeout.C:
		log.Warn("service did not stop in time; killing it")
		signalGroup(p.pid, syscall.SIGKILL)
		e = <-p.exit
	case <-s.killc:
		signalGroup(p.pid, syscall.SIGKILL)
		e = <-p.exit
	}
	s.finish(p, e)
	log.WithField("exit", e.String()).Info("service stopped")
}
