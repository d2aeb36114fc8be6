package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// The one owner of service changes (issue 10): nothing blocks on a service
// that ended, was removed or is being replaced; a reload never waits for a
// stop; nothing new starts during a shutdown.

func TestRestartOfAnEndedServiceAnswersAtOnce(t *testing.T) {
	h := newHarness(t, testBackoff)
	done := h.spec("done", "FAKE_EXIT=0")
	done.Restart = RestartNever
	keep := h.spec("keep")
	h.run(done, keep)
	eventually(t, "done ended for good", func() bool {
		for _, st := range h.sup.Status() {
			if st.Name == "done" {
				return st.State == "exited"
			}
		}
		return false
	})
	eventually(t, "owner saw the end", func() bool {
		h.sup.mu.Lock()
		defer h.sup.mu.Unlock()
		return h.sup.svcs["done"].result != nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := h.sup.Restart(ctx, "done", true)
	if !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), "ended for good") {
		t.Fatalf("Restart of an ended service: %v, want ErrGone (ended for good)", err)
	}
	if _, err := h.sup.Restart(ctx, "nope", true); !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), "not in the config") {
		t.Fatalf("Restart of an unknown service: %v", err)
	}
	if got := h.sup.Upgradable(); strings.Join(got, ",") != "" {
		// Command services are not upgradable; the ended one is not listed.
		t.Errorf("Upgradable = %v", got)
	}
}

// A reload that replaces a service whose old process ignores its stop signal
// returns at once; status answers meanwhile; a restart asked for meanwhile is
// answered by the new start, with its probation; the new process starts only
// once the old one is gone.
func TestReloadNeverWaitsForAStop(t *testing.T) {
	h := newHarness(t, testBackoff)
	slow := h.spec("slow", "FAKE_IGNORE=1")
	slow.StopTimeout = 3 * time.Second
	slow.Upgradable = true
	other := h.spec("other")
	h.run(slow, other)
	eventually(t, "started", func() bool { return h.count("slow", "start") == 1 && h.count("other", "start") == 1 })
	old := h.pid("slow")
	changed := slow
	changed.Args = append(append([]string{}, slow.Args...), "--changed")

	applied := make(chan error, 1)
	go func() { applied <- h.sup.Apply(context.Background(), []Spec{changed, other}) }()
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		// The old process ignores SIGINT for 3 s: an Apply that waited for it
		// would still be blocked here.
		t.Fatal("Apply waited for the old process to stop")
	}
	statusc := make(chan []Status, 1)
	go func() { statusc <- h.sup.Status() }()
	select {
	case st := <-statusc:
		if st[0].Name != "slow" || st[0].State != "stopping" {
			t.Errorf("status during the replacement: %+v", st[0])
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Status blocked during a reload")
	}
	// An upgrade's restart of the service being replaced is answered by its
	// new start, on probation.
	st, err := h.sup.Restart(context.Background(), "slow", true)
	if err != nil {
		t.Fatalf("Restart during the replacement: %v", err)
	}
	if st.PID == old || st.Early == nil {
		t.Errorf("Restart answered %+v", st)
	}
	if alive(old) {
		t.Error("the new process started before the old one was gone")
	}
	eventually(t, "the new process recorded its start", func() bool { return h.count("slow", "start") >= 2 })
	if pid := h.pid("slow"); pid != st.PID || h.count("slow", "start") != 2 {
		t.Errorf("running pid %d, restart answered %d, %d starts: want one start for the reload and the restart together", pid, st.PID, h.count("slow", "start"))
	}
}

// A stop during a replacement: the old process is stopped, the new one never
// starts, and the restart waiting for it is told why.
func TestNothingStartsDuringShutdown(t *testing.T) {
	h := newHarness(t, testBackoff)
	slow := h.spec("slow", "FAKE_IGNORE=1")
	slow.StopTimeout = time.Second
	h.run(slow)
	eventually(t, "started", func() bool { return h.count("slow", "start") == 1 })
	changed := slow
	changed.Args = append(append([]string{}, slow.Args...), "--changed")
	if err := h.sup.Apply(context.Background(), []Spec{changed}); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan error, 1)
	go func() {
		_, err := h.sup.Restart(context.Background(), "slow", true)
		restarted <- err
	}()
	eventually(t, "restart queued", func() bool {
		h.sup.mu.Lock()
		defer h.sup.mu.Unlock()
		r := h.sup.pending["slow"]
		return r != nil && len(r.reqs) == 1
	})
	h.stop()
	if err := <-restarted; !errors.Is(err, ErrGone) {
		t.Errorf("restart waiting for a replacement during shutdown: %v", err)
	}
	if n := h.count("slow", "start"); n != 1 {
		t.Errorf("%d starts: a process was started during the shutdown", n)
	}
}

// Restart of a service removed by a reload while the restart waits.
func TestRestartOfARemovedService(t *testing.T) {
	h := newHarness(t, testBackoff)
	a, b := h.spec("a"), h.spec("b")
	h.run(a, b)
	eventually(t, "started", func() bool { return h.count("a", "start") == 1 })
	if err := h.sup.Apply(context.Background(), []Spec{b}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a removed", func() bool {
		h.sup.mu.Lock()
		defer h.sup.mu.Unlock()
		_, ok := h.sup.svcs["a"]
		return !ok
	})
	_, err := h.sup.Restart(context.Background(), "a", true)
	if !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), "not in the config") {
		t.Fatalf("Restart of a removed service: %v", err)
	}
}
