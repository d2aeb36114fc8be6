// Package supervisor runs services as child processes: one process group
// each, one reaper for all, logs piped through logrus, restart policies with
// backoff, graceful stops, and configuration changes applied in place.
package supervisor

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// Options configure a Supervisor.
type Options struct {
	Log     *logrus.Entry
	Reaper  *Reaper
	Sink    *Sink
	Backoff Backoff       // zero: DefaultBackoff
	Grace   time.Duration // how long a child's pipes stay open after it exits; zero: 2s
	Output  OutputOptions
}

// Supervisor owns the services. Run is its run-group actor.
type Supervisor struct {
	opts  Options
	log   *logrus.Entry
	killc chan struct{}
	kill  sync.Once

	applyc  chan []Spec
	started chan struct{} // closed once Run has launched the first specs
	mu      sync.Mutex
	svcs    map[string]*handle
	order   []string
}

type handle struct {
	svc      *Service
	cancel   context.CancelFunc
	done     chan Result   // the service's result, once
	stopped  chan struct{} // closed when its last process is gone
	detached chan struct{} // closed when removed from the set
	result   *Result
}

// New makes a Supervisor; nothing runs until Run.
func New(opts Options) *Supervisor {
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = DefaultBackoff
	}
	if opts.Grace == 0 {
		opts.Grace = 2 * time.Second
	}
	return &Supervisor{
		opts:    opts,
		log:     opts.Log,
		killc:   make(chan struct{}),
		applyc:  make(chan []Spec),
		started: make(chan struct{}),
		svcs:    make(map[string]*handle),
	}
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
		if err := s.svcs[name].svc.Signal(sig); err != nil {
			s.log.WithError(err).WithField("service", name).Warn("forward signal")
		}
	}
}

// Apply replaces the set of services (SIGHUP): added ones start, removed ones
// stop, ones whose process changed restart, the others keep their process and
// take the new stop and restart settings. It returns once Run took the specs.
func (s *Supervisor) Apply(ctx context.Context, specs []Spec) error {
	select {
	case s.applyc <- specs:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Status lists the services in config order.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.order))
	for _, name := range s.order {
		out = append(out, s.svcs[name].svc.Status())
	}
	return out
}

// Service returns a running service by name (for the upgrader).
func (s *Supervisor) Service(name string) (*Service, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.svcs[name]
	if !ok || h.result != nil {
		return nil, false
	}
	return h.svc, true
}

// Started is closed once Run has launched its services.
func (s *Supervisor) Started() <-chan struct{} { return s.started }

// Upgradable lists the running services that run the current lavap release,
// in config order.
func (s *Supervisor) Upgradable() []*Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Service
	for _, name := range s.order {
		h := s.svcs[name]
		if h.result == nil && h.svc.snapshot().Upgradable {
			out = append(out, h.svc)
		}
	}
	return out
}

// Run starts specs and supervises them until ctx ends (every service is then
// stopped, in parallel) or every service has ended for good. It returns how
// each service ended, in config order.
func (s *Supervisor) Run(ctx context.Context, specs []Spec) []Result {
	ended := make(chan *handle)
	var finished []Result
	s.applySpecs(ctx, specs, ended)
	close(s.started)
	for {
		if s.running() == 0 {
			return s.sorted(finished)
		}
		select {
		case h := <-ended:
			r := <-h.done
			s.mu.Lock()
			h.result = &r
			s.mu.Unlock()
			finished = append(finished, r)
		case specs := <-s.applyc:
			s.applySpecs(ctx, specs, ended)
		}
	}
}

func (s *Supervisor) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
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

func (s *Supervisor) applySpecs(ctx context.Context, specs []Spec, ended chan<- *handle) {
	want := make(map[string]Spec, len(specs))
	for _, sp := range specs {
		want[sp.Name] = sp
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var replaced []*handle
	for _, name := range s.order {
		h := s.svcs[name]
		sp, keep := want[name]
		switch {
		case !keep:
			s.log.WithField("service", name).Info("service removed from config; stopping it")
			s.detach(h)
			delete(s.svcs, name)
		case h.result != nil && sameProcess(h.svc.snapshot(), sp):
			// Ended for good and unchanged: it stays ended.
		case h.result != nil || !sameProcess(h.svc.snapshot(), sp):
			s.log.WithField("service", name).Info("service changed in config; restarting it")
			s.detach(h)
			replaced = append(replaced, h)
			delete(s.svcs, name)
		default:
			h.svc.update(sp)
		}
	}
	// A changed service's new process must not overlap its old one (ports,
	// reward database): the old ones stop, in parallel, before any starts.
	for _, h := range replaced {
		<-h.stopped
	}
	s.order = s.order[:0]
	for _, sp := range specs {
		s.order = append(s.order, sp.Name)
		if _, ok := s.svcs[sp.Name]; ok {
			continue
		}
		s.svcs[sp.Name] = s.launch(ctx, sp, ended)
	}
}

// detach stops h's service; Run no longer waits for it. s.mu is held.
func (s *Supervisor) detach(h *handle) {
	close(h.detached)
	h.cancel()
}

// launch starts sp's service goroutine; s.mu is held.
func (s *Supervisor) launch(ctx context.Context, sp Spec, ended chan<- *handle) *handle {
	sctx, cancel := context.WithCancel(ctx)
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
	}
	if sp.Probation {
		svc.first = make(chan Exit, 1)
	}
	h := &handle{svc: svc, cancel: cancel, done: make(chan Result, 1), detached: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		r := svc.run(sctx)
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
