package main

import (
	"strings"
	"testing"
	"time"
)

// A SIMSEQ line split over two output events, as test2json may do, is read
// whole; the section replaces its previous version and leaves the page.
func TestSimulationSection(t *testing.T) {
	out := `{"Action":"output","Package":"m","Test":"TestSimulationComposedFaults/seq/7","Output":"    simulation_test.go:1: SIMSEQ {\"seed\":7,\"kinds\":{\"enospc\":2},"}
{"Action":"output","Package":"m","Test":"TestSimulationComposedFaults/seq/7","Output":"\"overlaps\":3,\"violations\":[\"inv1: p1 has no live process\"],\"disk\":\"tmpfs\"}\n"}
{"Action":"output","Package":"m","Test":"TestSimulationComposedFaults/seq/8","Output":"    simulation_test.go:1: SIMSEQ {\"seed\":8,\"kinds\":{\"svc-end\":1},\"overlaps\":1,\"violations\":[],\"disk\":\"tmpfs\"}\n"}
`
	res, err := readSimulation(strings.NewReader(out), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.records) != 2 || res.records[0].Seed != 7 || res.records[0].Kinds["enospc"] != 2 || len(res.records[0].Violations) != 1 {
		t.Fatalf("records: %+v", res.records)
	}
	sec := renderSimulation(&simRun{Command: "cmd", Records: res.records})
	for _, want := range []string{"| sequences | 2, 1 with a violation, 1 without |", "| `enospc` |", "§6.8.1", "| 1 | 7 |"} {
		if !strings.Contains(sec, want) {
			t.Errorf("section lacks %q:\n%s", want, sec)
		}
	}
	page := "# Reliability\n\nbody\n"
	once := splice(page, sec, simBegin, simEnd)
	twice := splice(once, strings.Replace(sec, "cmd", "cmd2", 1), simBegin, simEnd)
	if !strings.HasPrefix(twice, page) || strings.Count(twice, simBegin) != 1 || !strings.Contains(twice, "cmd2") {
		t.Errorf("splice:\n%s", twice)
	}
	if kept(twice, simBegin, simEnd) == "" || !strings.HasSuffix(twice, kept(twice, simBegin, simEnd)) {
		t.Errorf("kept section does not round-trip")
	}
}

// A mutant is caught within the sequences run until the catch, if the
// catching seed passes without it; one no sequence caught, or whose catch
// fails without the mutant too, is not counted.
func TestMutationSection(t *testing.T) {
	runs := []mutantRun{
		{Name: "restart-blocks", Ran: 9, Caught: []uint64{17, 12}, First: "inv3: stuck"},
		{Name: "late-signals", Ran: 60},
		{Name: "link-decides", Ran: 4, Caught: []uint64{3}, First: "inv1: x", Control: "inv1: y"},
	}
	sec := renderMutants(runs, 60, 10, 3, time.Now(), time.Minute, "m", "go")
	for _, want := range []string{
		"| `restart-blocks` | yes | 9 | 17 12 | passes | `inv3: stuck` |",
		"| `late-signals` | **no** | 60 (none caught it) |  | – |",
		"| `link-decides` | **not attributable** | 4 | 3 | fails too: `inv1: y` |",
		"1 of 3 caught",
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("section lacks %q:\n%s", want, sec)
		}
	}
	page := splice("# R\n", sec, mutBegin, mutEnd)
	if kept(page, mutBegin, mutEnd) != sec {
		t.Errorf("kept section does not round-trip:\n%s", page)
	}
}
