package control

import (
	"testing"

	"github.com/lavavisor/lavavisor/chain"
	"github.com/lavavisor/lavavisor/config"
	"github.com/lavavisor/lavavisor/supervisor"
)

func TestReadiness(t *testing.T) {
	v := func(pmin, cmin string) *chain.Versions {
		p, _ := chain.ParseVersion(pmin)
		c, _ := chain.ParseVersion(cmin)
		return &chain.Versions{ProviderMin: p, ProviderTarget: p, ConsumerMin: c, ConsumerTarget: c}
	}
	run := func(name, release string) supervisor.Status {
		return supervisor.Status{Name: name, State: "running", PID: 10, Release: release, Upgradable: true}
	}
	roles := map[string]config.Role{"prov": config.RoleProvider, "cons": config.RoleConsumer}
	sidecarDown := supervisor.Status{Name: "sidecar", State: "backoff"}
	for _, c := range []struct {
		name     string
		statuses []supervisor.Status
		v        *chain.Versions
		want     string
	}{
		{"all at minimum", []supervisor.Status{run("prov", "v6.2.5"), run("cons", "v6.2.0")}, v("6.2.5", "6.2.0"), ""},
		{"consumer minimum applies to consumers", []supervisor.Status{run("prov", "v6.2.5"), run("cons", "v6.2.5")}, v("6.2.5", "6.3.0"),
			"cons runs v6.2.5, below the chain's consumer minimum 6.3.0"},
		{"unknown chain: running is enough", []supervisor.Status{run("prov", "v1.0.0")}, nil, ""},
		{"stopped lavap", []supervisor.Status{{Name: "prov", State: "backoff", Upgradable: true}}, nil, "prov is backoff"},
		{"a command service does not count beside lavap ones", []supervisor.Status{run("prov", "v6.2.5"), sidecarDown}, v("6.2.5", "6.2.5"), ""},
		{"without lavap services every service must run", []supervisor.Status{sidecarDown}, nil, "sidecar is backoff"},
		{"unknown role takes the higher minimum", []supervisor.Status{run("other", "v6.2.5")}, v("6.2.5", "6.2.6"),
			"other runs v6.2.5, below the chain's highest minimum 6.2.6"},
		{"no service", nil, nil, "no service is running"},
		{"a held service is not counted", []supervisor.Status{run("prov", "v6.2.5"), {Name: "cons", State: "held", Upgradable: true}}, v("6.2.5", "6.2.5"), ""},
	} {
		if got := readiness(c.statuses, c.v, roles); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
