package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// section is one scenario in docs/BENCHMARKS.md.
type section struct {
	title  string
	method string
	tables []table
	notes  []string
}

type table struct {
	header []string
	rows   [][]string
}

// goal is one target of the issues, checked against LavaVisor's figures.
type goal struct {
	what   string
	result string
	met    bool
}

func (t table) markdown(b *strings.Builder) {
	b.WriteString("| " + strings.Join(t.header, " | ") + " |\n|")
	for range t.header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	b.WriteString("\n")
}

func (s section) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "## %s\n\n%s\n\n", s.title, s.method)
	for _, t := range s.tables {
		t.markdown(b)
	}
	for _, n := range s.notes {
		fmt.Fprintf(b, "- %s\n", n)
	}
	if len(s.notes) > 0 {
		b.WriteString("\n")
	}
}

func goalsTable(goals []goal) table {
	t := table{header: []string{"goal", "LavaVisor", "met"}}
	for _, g := range goals {
		met := "no"
		if g.met {
			met = "yes"
		}
		t.rows = append(t.rows, []string{g.what, g.result, met})
	}
	return t
}

// values picks one figure out of every sample.
func values[S any](ss []S, f func(S) float64) []float64 {
	xs := make([]float64, len(ss))
	for i, s := range ss {
		xs[i] = f(s)
	}
	return xs
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// spread is "median (min–max)" with prec decimals; "—" without samples.
func spread(xs []float64, prec int) string {
	if len(xs) == 0 {
		return "—"
	}
	m := fmt.Sprintf("%.*f", prec, median(xs))
	if len(xs) == 1 {
		return m
	}
	return fmt.Sprintf("%s (%.*f–%.*f)", m, prec, slices.Min(xs), prec, slices.Max(xs))
}

// ratio is LavaVisor's median over the peer's, "—" for LavaVisor's own row.
func ratio(name string, lv, peer []float64) string {
	if name == "LavaVisor" {
		return "—"
	}
	if len(lv) == 0 || len(peer) == 0 || median(peer) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", median(lv)/median(peer))
}

func sum(xs []float64) float64 {
	t := 0.0
	for _, x := range xs {
		t += x
	}
	return t
}
