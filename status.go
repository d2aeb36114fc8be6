package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/lavavisor/lavavisor/control"
	"github.com/lavavisor/lavavisor/upgrade"
)

type statusCmd struct {
	JSON bool `name:"json" help:"Print the status as JSON."`
}

// Run asks the instance running on the home over its control socket.
func (c *statusCmd) Run(g *Globals) error {
	h := newHome(g.Directory)
	rep, err := control.AskStatus(h.socket(), h.root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lavavisor status:", err)
		return &exitError{code: 1}
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printStatus(os.Stdout, rep, time.Now())
	return nil
}

// printStatus writes the report as a table for people.
func printStatus(w io.Writer, rep control.Report, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tHEALTH\tPID\tRELEASE\tUPTIME\tRESTARTS\tLAST EXIT")
	for _, s := range rep.Services {
		pid, uptime := "-", "-"
		if s.PID != 0 {
			pid = fmt.Sprint(s.PID)
			uptime = (time.Duration(s.UptimeS) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Name, s.State, orDash(s.Health), pid, orDash(s.Release), uptime, s.Restarts, orDash(s.LastExit))
	}
	tw.Flush()
	fmt.Fprintln(w)
	if c := rep.Chain; c != nil {
		height := "height unknown (file source)"
		if c.Height > 0 {
			height = fmt.Sprintf("height %d", c.Height)
		}
		fmt.Fprintf(w, "chain: provider min %s target %s, consumer min %s target %s, %s\n",
			c.ProviderMin, c.ProviderTarget, c.ConsumerMin, c.ConsumerTarget, height)
	} else {
		fmt.Fprintln(w, "chain: not read yet")
	}
	if u := rep.LastUpgrade; u != nil {
		from := u.From
		if from == "" {
			from = "(none)"
		}
		fmt.Fprintf(w, "last upgrade: %s -> %s, %s, %s ago (%s)\n", from, u.To, u.Result,
			now.Sub(u.At).Round(time.Second), u.At.Local().Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "last upgrade: none")
	}
	if p := rep.Pending; p != nil {
		fmt.Fprintln(w, pendingLine(p, now))
	}
	printProposals(w, rep.Proposals, rep.ProposalsError, now)
	for _, p := range rep.Problems {
		fmt.Fprintln(w, "problem: "+p)
	}
}

// pendingLine describes a waiting upgrade for people (status and check).
func pendingLine(p *upgrade.Pending, now time.Time) string {
	return fmt.Sprintf("pending: %s, not before %s (in %s), waiting for the %s: %s", p.To,
		p.NotBefore.UTC().Format(time.RFC3339), p.NotBefore.Sub(now).Round(time.Second), p.WaitingFor, p.Reason)
}

// printProposals shows the version proposals and their pre-fetch (SPEC §8),
// for status and check.
func printProposals(w io.Writer, ps []upgrade.ProposalStatus, readErr string, now time.Time) {
	if readErr != "" {
		fmt.Fprintf(w, "proposals: unavailable (%s)\n", readErr)
	}
	for _, p := range ps {
		when := fmt.Sprintf("voting ends %s (in %s)", p.VotingEnd.Local().Format(time.RFC3339), p.VotingEnd.Sub(now).Round(time.Second))
		if p.Ended || !now.Before(p.VotingEnd) {
			when = "voting ended " + p.VotingEnd.Local().Format(time.RFC3339)
		}
		versions := "versions refused"
		if p.ProviderTarget != "" {
			versions = fmt.Sprintf("provider min %s target %s, consumer min %s target %s", p.ProviderMin, p.ProviderTarget, p.ConsumerMin, p.ConsumerTarget)
		}
		line := fmt.Sprintf("proposal %d: %s; %s; release %s, prefetch %s", p.ID, versions, when, orDash(p.Release), p.Prefetch)
		if p.Reason != "" {
			line += " (" + p.Reason + ")"
		}
		fmt.Fprintln(w, line)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
