package main

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/internal/mutant"
)

// stopper catches signals from a command's first instruction (SPEC §6.8
// point 5): the first SIGINT/SIGTERM cancels Context, whatever the command
// is doing then (reading the chain, downloading, prompting); a second one
// calls the force hook. SIGHUP and SIGUSR1/2 go to hooks a running session
// sets; before that they are ignored (SIGHUP's default would kill). SIGPIPE
// is ignored: a closed terminal must not kill LavaVisor.
type stopper struct {
	log    *logrus.Entry
	ctx    context.Context
	cancel context.CancelFunc
	sigc   chan os.Signal
	done   chan struct{}

	mu      sync.Mutex
	first   os.Signal
	stops   int
	force   func()
	reload  func()
	forward func(syscall.Signal)
	// hup: a SIGHUP came before the services ran: the config read at start
	// may predate the change it announces, so it is applied once they run.
	hup bool
}

func newStopper(log *logrus.Entry) *stopper {
	s := &stopper{log: log, sigc: make(chan os.Signal, 8), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if mutant.On(mutant.LateSignals) {
		signal.Notify(s.sigc, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	} else {
		signal.Notify(s.sigc, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	}
	go s.loop()
	return s
}

// Context is cancelled by the first SIGINT/SIGTERM.
func (s *stopper) Context() context.Context { return s.ctx }

// Signal is the first stop signal received, or nil.
func (s *stopper) Signal() os.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// close stops catching signals.
func (s *stopper) close() {
	signal.Stop(s.sigc)
	close(s.done)
	s.cancel()
}

// hooks sets what a running session does on a second stop signal, SIGHUP and
// SIGUSR1/2; nil hooks ignore them. A hook must not block.
func (s *stopper) hooks(force, reload func(), forward func(syscall.Signal)) {
	if mutant.On(mutant.LateSignals) {
		signal.Notify(s.sigc, os.Interrupt, syscall.SIGTERM)
	}
	s.mu.Lock()
	s.force, s.reload, s.forward = force, reload, forward
	hup := s.hup && reload != nil && s.stops == 0
	s.hup = false
	s.mu.Unlock()
	if hup {
		s.log.Info("applying the SIGHUP that came before the services started")
		reload()
	}
}

func (s *stopper) loop() {
	for {
		var sig os.Signal
		select {
		case <-s.done:
			return
		case sig = <-s.sigc:
		}
		s.mu.Lock()
		force, forward := s.force, s.forward
		switch sig {
		case os.Interrupt, syscall.SIGTERM:
			s.stops++
			if s.stops == 1 {
				s.first = sig
			}
		}
		stops := s.stops
		s.mu.Unlock()
		switch sig {
		case os.Interrupt, syscall.SIGTERM:
			if stops == 1 {
				s.cancel()
			} else if stops == 2 && force != nil {
				s.log.WithField("signal", sig.String()).Warn("second stop signal: killing services now")
				force()
			}
		case syscall.SIGHUP:
			if stops > 0 {
				continue
			}
			s.mu.Lock()
			reload := s.reload
			if reload == nil {
				// Checked again under the lock: hooks may have just been set.
				s.hup = true
			}
			s.mu.Unlock()
			if reload == nil {
				s.log.Info("SIGHUP before the services started: applied once they run")
				continue
			}
			reload()
		case syscall.SIGUSR1, syscall.SIGUSR2:
			if forward != nil {
				s.log.WithField("signal", sig.String()).Info("forwarding signal to services")
				forward(sig.(syscall.Signal))
			}
		}
	}
}
