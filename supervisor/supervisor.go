// Package supervisor runs services as child processes: one process group
// each, one reaper for all, logs piped through logrus, restart policies with
// backoff, graceful stops, and configuration changes applied in place.
//
// The Supervisor is the one owner of service changes (SPEC §5): a reload,
// an upgrade's restarts and crash restarts all go through it, address
// services by name, and never block on a service that has ended, been
// replaced or removed. Waiting for a stop or a min-uptime happens outside
// its lock.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/health"

	"github.com/lavavisor/lavavisor/internal/mutant"
)

// Options configure a Supervisor.
type Options struct {
	Log     *logrus.Entry
	Reaper  *Reaper
	Sink    *Sink
	Backoff Backoff       // zero: DefaultBackoff
	Grace   time.Duration // how long a child's pipes stay open after it exits; zero: 2s
	Output  OutputOptions
	// Release resolves the lavap release that upgradable services start on
	// until SetRelease names one (the `current` link at start).
	Release func() (path, tag string, err error)
	// Exec runs a health check's program through the one reaper
	// (Reaper.Output); nil: exec checks fail.
	Exec health.ExecFunc
	// Held are the services the operator holds stopped (state.json): they
	// start without a process until Unhold.
	Held []string
}

// ErrGone is wrapped by every answer about a service that has ended for
// good, was removed or is stopping: the request was not carried out.
var ErrGone = errors.New("service gone")

// goneError names the service and what happened to it.
type goneError struct{ name, why string }

func (e *goneError) Error() string { return fmt.Sprintf("service %s %s", e.name, e.why) }
func (e *goneError) Unwrap() error { return ErrGone }

// Supervisor owns the services. Run is its run-group actor.
type Supervisor struct {
	opts  Options
	log   *logrus.Entry
	killc chan struct{}
	kill  sync.Once

	applyc  chan applyRequest
	readyc  chan *handle  // a removed or replaced service's process is gone
	started chan struct{} // closed once Run has launched the first specs
	done    chan struct{} // closed when Run returns
	wg      sync.WaitGroup

	mu      sync.Mutex
	ctx     context.Context // Run's
	ended   chan *handle
	svcs    map[string]*handle
	pending map[string]*replacement
	// draining are removed or replaced services whose process is still
	// stopping: a service of the same name starts only once it is gone.
	draining map[string]*handle
	order    []string
	stopped  bool // Run's context ended: nothing new starts
	relPath  string
	relTag   string
	held     map[string]bool // held by the operator, by name: kept across reloads
}

type applyRequest struct {
	specs []Spec
	done  chan struct{}
}

type handle struct {
	svc      *Service
	cancel   context.CancelFunc
	done     chan Result   // the service's result, once
	stopped  chan struct{} // closed when its run loop and last process are gone
	detached chan struct{} // closed when removed from the set or replaced
	why      string        // set with detached: what happened to it
	result   *Result
}

// replacement is a changed service waiting for its old process to stop
// before its new one starts (ports, reward database: they must not overlap).
type replacement struct {
	spec Spec
	reqs []restartRequest // restarts asked for meanwhile: the new start answers them
}

// New makes a Supervisor; nothing runs until Run.
func New(opts Options) *Supervisor {
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.Grace == 0 {
		opts.Grace = 2 * time.Second
	}
	s := &Supervisor{
		opts:     opts,
		log:      opts.Log,
		killc:    make(chan struct{}),
		applyc:   make(chan applyRequest),
		readyc:   make(chan *handle),
		started:  make(chan struct{}),
		done:     make(chan struct{}),
		svcs:     make(map[string]*handle),
		pending:  make(map[string]*replacement),
		draining: make(map[string]*handle),
		held:     make(map[string]bool),
	}
	for _, name := range opts.Held {
		s.held[name] = true
	}
	return s
}

// Kill makes every stop, current and future, SIGKILL at once (a second
// SIGINT/SIGTERM). Run still waits for the processes to be reaped.
func (s *Supervisor) Kill() {
	s.kill.Do(func() {
		close(s.killc)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, h := range s.svcs {
			h.svc.Signal(syscall.SIGKILL)
		}
	})
}

// Forward sends sig to every running service's process group.
func (s *Supervisor) Forward(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.order {
		h, ok := s.svcs[name]
		if !ok {
			continue
		}
		if err := h.svc.Signal(sig); err != nil {
			s.log.WithError(err).WithField("service", name).Warn("forward signal")
		}
	}
}

// Apply replaces the set of services (SIGHUP): added ones start, removed ones
// stop, ones whose process changed restart once their old process is gone,
// the others keep their process and take the new stop and restart settings.
// It returns once the new set is in place (status shows it), never waiting
// for a stop: a replaced service starts when its old process is gone.
func (s *Supervisor) Apply(ctx context.Context, specs []Spec) error {
	req := applyRequest{specs: specs, done: make(chan struct{})}
	select {
	case s.applyc <- req:
	case <-s.done:
		return errors.New("supervisor stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-req.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetRelease makes path (release tag) the lavap binary that upgradable
// services start on from now on, whatever `current` says: an upgrade's
// restarts, a rollback's, crash restarts and services a reload adds.
func (s *Supervisor) SetRelease(path, tag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.relPath, s.relTag = path, tag
}

// release resolves the binary of an upgradable service's next start.
func (s *Supervisor) release() (string, string, error) {
	s.mu.Lock()
	path, tag := s.relPath, s.relTag
	s.mu.Unlock()
	if path != "" {
		return path, tag, nil
	}
	if s.opts.Release == nil {
		return "", "", nil // the spec's own Binary
	}
	return s.opts.Release()
}

// Status lists the services in config order.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.order))
	for _, name := range s.order {
		if h, ok := s.svcs[name]; ok {
			out = append(out, h.svc.Status())
		} else if r, ok := s.pending[name]; ok {
			// Replaced: its old process is still stopping.
			st := Status{Name: name, Upgradable: r.spec.Upgradable}
			if old, ok := s.draining[name]; ok {
				st = old.svc.Status()
			}
			st.State = "stopping"
			out = append(out, st)
		}
	}
	return out
}

// Started is closed once Run has launched its services.
func (s *Supervisor) Started() <-chan struct{} { return s.started }

// Upgradable names the services that run the lavap release, have not ended
// for good and are not held stopped by the operator, in config order: the
// services an upgrade can move and prove the new release on.
func (s *Supervisor) Upgradable() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, name := range s.order {
		if s.held[name] {
			continue
		}
		if r, ok := s.pending[name]; ok {
			if r.spec.Upgradable {
				out = append(out, name)
			}
			continue
		}
		h, ok := s.svcs[name]
		if ok && h.result == nil && h.svc.snapshot().Upgradable {
			out = append(out, name)
		}
	}
	return out
}

// RunningRelease is the release of service name's running process ("" for
// none or a command service).
func (s *Supervisor) RunningRelease(name string) string {
	s.mu.Lock()
	h, ok := s.svcs[name]
	s.mu.Unlock()
	if !ok {
		return ""
	}
	st := h.svc.Status()
	if st.PID == 0 {
		return ""
	}
	return st.Release
}

// LastLines returns the last n lines service name logged, if it is known.
func (s *Supervisor) LastLines(name string, n int) []string {
	s.mu.Lock()
	h, ok := s.svcs[name]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	return h.svc.LastLines(n)
}

// FirstStart is the probation of service name's first process, when it was
// launched with Spec.Probation (a release linked at start). It waits for
// that first start to have been tried: PID 0 means it could not start.
func (s *Supervisor) FirstStart(name string) (Started, bool) {
	s.mu.Lock()
	h, ok := s.svcs[name]
	held := s.held[name]
	s.mu.Unlock()
	if !ok || h.svc.first == nil || held {
		return Started{}, false // a held service has nothing on probation (held since Upgradable() was read, too)
	}
	select {
	case <-h.svc.started:
	case <-h.stopped:
		return Started{}, false
	}
	st := Started{Early: h.svc.first, MinUptime: h.svc.snapshot().MinUptime, Gone: h.detached, HealthCheck: h.svc.snapshot().Health.Describe()}
	h.svc.mu.Lock()
	if p := h.svc.proc; p != nil {
		st.Health, st.PID, st.Gone = p.health, p.pid, p.gone
	}
	h.svc.mu.Unlock()
	return st, true
}

// Restart stops service name's process gracefully (stop-signal,
// stop-timeout, SIGKILL) and starts a new one at once, without backoff, on
// the release SetRelease named. With probation, an exit before its
// min-uptime is reported on Started.Early and not restarted until the next
// Restart. A service that has ended for good, was removed or is stopping is
// answered at once with an error wrapping ErrGone.
func (s *Supervisor) Restart(ctx context.Context, name string, probation bool) (Started, error) {
	return s.request(ctx, name, restartRequest{kind: reqRestart, probation: probation, reply: make(chan restartReply, 1)})
}

// Hold stops service name (stop-signal, stop-timeout, SIGKILL) and keeps it
// stopped: neither its restart policy nor an upgrade starts it, and a reload
// keeps it held, until Unhold.
func (s *Supervisor) Hold(ctx context.Context, name string) error {
	_, err := s.request(ctx, name, restartRequest{kind: reqHold, reply: make(chan restartReply, 1)})
	if err == nil {
		s.mu.Lock()
		s.held[name] = true
		s.mu.Unlock()
	}
	return err
}

// Unhold starts a held service on the services' release.
func (s *Supervisor) Unhold(ctx context.Context, name string) (Started, error) {
	st, err := s.request(ctx, name, restartRequest{kind: reqUnhold, reply: make(chan restartReply, 1)})
	if err == nil {
		s.mu.Lock()
		delete(s.held, name)
		s.mu.Unlock()
	}
	return st, err
}

// Held names the services held stopped, in config order.
func (s *Supervisor) Held() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, name := range s.order {
		if s.held[name] {
			out = append(out, name)
		}
	}
	return out
}

// Names are the configured services, in config order.
func (s *Supervisor) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

func (s *Supervisor) request(ctx context.Context, name string, req restartRequest) (Started, error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return Started{}, &goneError{name, "is stopping: LavaVisor is shutting down"}
	}
	if r, ok := s.pending[name]; ok {
		if req.kind != reqRestart {
			s.mu.Unlock()
			return Started{}, fmt.Errorf("service %s is being replaced by a reload: try again once it started", name)
		}
		// Changed by a reload and waiting for its old process to stop: its
		// new start answers this request.
		r.reqs = append(r.reqs, req)
		s.mu.Unlock()
		return waitReply(ctx, req)
	}
	h, ok := s.svcs[name]
	s.mu.Unlock()
	if (!ok || h.result != nil) && mutant.On(mutant.RestartBlocks) {
		<-ctx.Done()
		return Started{}, ctx.Err()
	}
	switch {
	case !ok:
		return Started{}, &goneError{name, "is not in the config (removed by a reload)"}
	case h.result != nil:
		return Started{}, &goneError{name, "has ended for good (" + h.result.String() + ")"}
	}
	select {
	case h.svc.restartc <- req:
	case <-h.stopped:
		if mutant.On(mutant.RestartBlocks) {
			<-ctx.Done()
			return Started{}, ctx.Err()
		}
		return Started{}, s.gone(name, h)
	case <-ctx.Done():
		return Started{}, ctx.Err()
	}
	return waitReply(ctx, req)
}

func waitReply(ctx context.Context, req restartRequest) (Started, error) {
	select {
	case r := <-req.reply:
		return r.started, r.err
	case <-ctx.Done():
		return Started{}, ctx.Err()
	}
}

// gone says what happened to h, whose run loop has ended.
func (s *Supervisor) gone(name string, h *handle) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-h.detached:
		return &goneError{name, h.why}
	default:
	}
	if s.stopped {
		return &goneError{name, "is stopping: LavaVisor is shutting down"}
	}
	return &goneError{name, "has ended for good"}
}

// Run starts specs and supervises them until ctx ends (every service is then
// stopped, in parallel) or every service has ended for good. It returns how
// each service ended, in config order.
func (s *Supervisor) Run(ctx context.Context, specs []Spec) []Result {
	defer close(s.done)
	defer s.wg.Wait() // removed and replaced services stop in the background
	s.mu.Lock()
	s.ctx, s.ended = ctx, make(chan *handle)
	s.applyLocked(specs)
	s.mu.Unlock()
	close(s.started)
	var finished []Result
	stopping := ctx.Done()
	for {
		if s.live() == 0 {
			s.mu.Lock()
			s.stopped = true
			s.mu.Unlock()
			return s.sorted(finished)
		}
		select {
		case h := <-s.ended:
			r := <-h.done
			s.mu.Lock()
			h.result = &r
			s.mu.Unlock()
			finished = append(finished, r)
		case req := <-s.applyc:
			s.mu.Lock()
			if !s.stopped {
				s.applyLocked(req.specs)
			}
			s.mu.Unlock()
			close(req.done)
		case h := <-s.readyc:
			s.mu.Lock()
			s.drainedLocked(h)
			s.mu.Unlock()
		case <-stopping:
			stopping = nil
			s.mu.Lock()
			s.stopped = true
			s.mu.Unlock()
		}
	}
}

// live counts the services Run still waits for: running ones and ones
// waiting for their replacement.
func (s *Supervisor) live() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.pending) + len(s.draining)
	for _, h := range s.svcs {
		if h.result == nil {
			n++
		}
	}
	return n
}

func (s *Supervisor) sorted(rs []Result) []Result {
	idx := make(map[string]int)
	for i, n := range s.order {
		idx[n] = i
	}
	sort.SliceStable(rs, func(i, j int) bool { return idx[rs[i].Name] < idx[rs[j].Name] })
	return rs
}

// applyLocked makes specs the set of services without waiting for any stop;
// s.mu is held.
func (s *Supervisor) applyLocked(specs []Spec) {
	want := make(map[string]Spec, len(specs))
	for _, sp := range specs {
		want[sp.Name] = sp
	}
	for name, r := range s.pending {
		if sp, keep := want[name]; keep {
			r.spec = sp // the newest config wins when the old process is gone
			continue
		}
		s.log.WithField("service", name).Info("service removed from config; it will not be started again")
		s.failRequests(r.reqs, &goneError{name, "was removed by the reload"})
		delete(s.pending, name)
	}
	for _, name := range s.order {
		h, ok := s.svcs[name]
		if !ok {
			continue
		}
		sp, keep := want[name]
		switch {
		case !keep:
			s.log.WithField("service", name).Info("service removed from config; stopping it")
			s.detach(h, "was removed by the reload")
			delete(s.svcs, name)
			delete(s.held, name)
		case h.result != nil && sameProcess(h.svc.snapshot(), sp):
			// Ended for good and unchanged: it stays ended.
		case h.result != nil:
			s.log.WithField("service", name).Info("service changed in config; starting it again")
			delete(s.svcs, name)
		case !sameProcess(h.svc.snapshot(), sp):
			s.log.WithField("service", name).Info("service changed in config; restarting it")
			s.detach(h, "was replaced by the reload")
			if mutant.On(mutant.ReloadHoldsLock) {
				<-h.stopped
			}
			delete(s.svcs, name)
		default:
			h.svc.update(sp)
		}
	}
	s.order = s.order[:0]
	for _, sp := range specs {
		s.order = append(s.order, sp.Name)
		if _, ok := s.svcs[sp.Name]; ok {
			continue
		}
		if _, ok := s.pending[sp.Name]; ok {
			continue
		}
		if _, ok := s.draining[sp.Name]; ok {
			s.pending[sp.Name] = &replacement{spec: sp}
			continue
		}
		s.svcs[sp.Name] = s.launch(sp, nil)
	}
}

// drainedLocked forgets h, whose process is gone, and starts the service
// waiting for it to be gone, if any; s.mu is held.
func (s *Supervisor) drainedLocked(h *handle) {
	name := h.svc.snapshot().Name
	if s.draining[name] != h {
		return
	}
	delete(s.draining, name)
	r, ok := s.pending[name]
	if !ok {
		return // removed, not replaced
	}
	delete(s.pending, name)
	if s.stopped {
		s.failRequests(r.reqs, &goneError{name, "is stopping: LavaVisor is shutting down"})
		return
	}
	var first *restartRequest
	if len(r.reqs) > 0 {
		first = &r.reqs[0]
	}
	s.svcs[name] = s.launch(r.spec, first)
	if len(r.reqs) > 1 {
		// Later requests share the first one's answer.
		go func() {
			rep := <-first.reply
			for _, q := range r.reqs {
				q.reply <- rep
			}
		}()
	}
}

func (s *Supervisor) failRequests(reqs []restartRequest, err error) {
	for _, q := range reqs {
		q.reply <- restartReply{err: err}
	}
}

// detach stops h's service in the background; Run no longer waits for its
// result. s.mu is held.
func (s *Supervisor) detach(h *handle, why string) {
	h.why = why
	close(h.detached)
	h.cancel()
	s.draining[h.svc.snapshot().Name] = h
	go func() {
		<-h.stopped
		select {
		case s.readyc <- h:
		case <-s.done:
		}
	}()
}

// launch starts sp's service goroutine; s.mu is held. first, when set, is a
// restart request the first start answers.
func (s *Supervisor) launch(sp Spec, first *restartRequest) *handle {
	sctx, cancel := context.WithCancel(s.ctx)
	svc := &Service{
		log:      s.log.WithField("service", sp.Name),
		reaper:   s.opts.Reaper,
		out:      s.opts.Sink.NewOutput(sp.Name, s.opts.Output),
		backoff:  s.opts.Backoff,
		killc:    s.killc,
		grace:    s.opts.Grace,
		restartc: make(chan restartRequest),
		spec:     sp,
		state:    "starting",
		release:  s.release,
		healthc:  make(chan healthChange, 1),
		started:  make(chan struct{}),
		exec:     s.opts.Exec,
	}
	if sp.Probation {
		svc.first = make(chan Exit, 1)
	}
	h := &handle{svc: svc, cancel: cancel, done: make(chan Result, 1), detached: make(chan struct{}), stopped: make(chan struct{})}
	ended := s.ended
	held := s.held[sp.Name]
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		r := svc.run(sctx, first, h.detached, held)
		svc.out.Close()
		close(h.stopped)
		h.done <- r
		select {
		case ended <- h:
		case <-h.detached:
		}
	}()
	return h
}

// ExitCode is `start`'s exit code once every service ended for good: 0 if
// all exited 0, else 1.
func ExitCode(rs []Result) int {
	for _, r := range rs {
		if r.Err != nil || (r.Exit != nil && r.Exit.Code() != 0) {
			return 1
		}
	}
	return 0
}

// String describes a result for the final log line.
func (r Result) String() string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("failed to start: %v", r.Err)
	case r.Exit != nil:
		return r.Exit.String()
	}
	return "stopped"
}
