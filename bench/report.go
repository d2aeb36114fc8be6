package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// section is one scenario in docs/BENCHMARKS.md.
type section struct {
	title  string
	method string
	tables []table
	notes  []string
	kept   string // the body of the previous report's section, for a scenario not run
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

// goalRow is a row of the goals table: a goal of a scenario run now, or the
// cells of a row of the previous report, kept as they were.
type goalRow struct {
	scenario string
	goal     goal
	kept     []string
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
	if s.kept != "" {
		fmt.Fprintf(b, "## %s\n\n%s\n\n", s.title, s.kept)
		return
	}
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

var goalsHeader = []string{"scenario", "goal", "LavaVisor", "met"}

func goalsTable(rows []goalRow) table {
	t := table{header: goalsHeader}
	for _, r := range rows {
		if r.kept != nil {
			t.rows = append(t.rows, r.kept)
			continue
		}
		met := "no"
		if r.goal.met {
			met = "yes"
		}
		t.rows = append(t.rows, []string{r.scenario, r.goal.what, r.goal.result, met})
	}
	return t
}

// previous is what a scenario that is not run keeps of the last report.
type previous struct {
	date     string
	sections map[string]string    // body by title
	goals    map[string][]goalRow // rows of the goals table by scenario
}

// readPrevious reads the report at path; a missing or odd file gives nothing.
func readPrevious(path string) previous {
	p := previous{date: "an earlier run", sections: map[string]string{}, goals: map[string][]goalRow{}}
	raw, err := os.ReadFile(path)
	if err != nil {
		return p
	}
	title := ""
	var body []string
	flush := func() {
		if title != "" && title != "Goals" {
			p.sections[title] = strings.TrimSpace(strings.Join(body, "\n"))
		}
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if t, ok := strings.CutPrefix(line, "## "); ok {
			flush()
			title, body = strings.TrimSpace(t), nil
			continue
		}
		body = append(body, line)
		cells := tableCells(line)
		switch {
		case title == "" && len(cells) == 2 && cells[0] == "date":
			p.date = cells[1]
		case title == "Goals" && len(cells) == len(goalsHeader) && cells[0] != goalsHeader[0] && !strings.HasPrefix(cells[0], "---"):
			p.goals[cells[0]] = append(p.goals[cells[0]], goalRow{scenario: cells[0], kept: cells})
		}
	}
	flush()
	return p
}

// tableCells splits a markdown table row; nil for any other line.
func tableCells(line string) []string {
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "|") || !strings.HasSuffix(line, "|") || len(line) < 2 {
		return nil
	}
	cells := strings.Split(line[1:len(line)-1], "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

// keptNote starts a section kept from an earlier report.
const keptNote = "_Not measured in this run: kept from the report of "

// keptBody marks a section body as kept from the report of date, once: a
// section kept again keeps the date it was measured.
func keptBody(body, date string) string {
	if strings.HasPrefix(body, keptNote) {
		return body
	}
	return keptNote + date + "._\n\n" + body
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
