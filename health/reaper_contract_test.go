package health_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/lavavisor/lavavisor/health"
	"github.com/lavavisor/lavavisor/supervisor"
)

// TestReaperOutputContract runs exec checks through the real
// supervisor.(*Reaper).Output, what the caller passes as ExecFunc, so that
// a change of its wording or of its timeout shows here. A reaper waits for
// every child of its process, so it runs in a child of the test binary.
func TestReaperOutputContract(t *testing.T) {
	if os.Getenv("LAVAVISOR_HEALTH_REAPER_CHILD") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReaperOutputContract$", "-test.v")
		cmd.Env = append(os.Environ(), "LAVAVISOR_HEALTH_REAPER_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in a child with the reaper: %v\n%s", err, out)
		}
		return
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	r, err := supervisor.NewReaper(logrus.NewEntry(log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	var run health.ExecFunc = r.Output

	for _, c := range []struct {
		argv    []string
		timeout time.Duration
		want    string
	}{
		{[]string{"/bin/true"}, 10 * time.Second, ""},
		{[]string{"/bin/sh", "-c", "echo 'relays: 0 of 3 endpoints'; exit 2"}, 10 * time.Second,
			`exec /bin/sh -c "echo 'relays: 0 of 3 endpoints'; exit 2": exit code 2: relays: 0 of 3 endpoints`},
		{[]string{"/bin/sh", "-c", "kill -9 $$"}, 10 * time.Second, `exec /bin/sh -c "kill -9 $$": killed by SIGKILL`},
		{[]string{"/bin/sh", "-c", "sleep 600 & wait"}, 200 * time.Millisecond, "timeout after 200ms"},
	} {
		err := health.Probe(context.Background(), health.Spec{Exec: c.argv, Timeout: c.timeout}, run)
		if c.want == "" && err != nil {
			t.Errorf("%q: %v, want healthy", c.argv, err)
		}
		if c.want != "" && (err == nil || err.Error() != c.want) {
			t.Errorf("%q: %v, want %q", c.argv, err, c.want)
		}
	}
}
