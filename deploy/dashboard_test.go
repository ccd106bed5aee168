package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hjepa-go/hjepa/train/telemetry"
)

// Every metric the Grafana dashboard queries is one the coordinator or a
// worker exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	exported := map[string]bool{}
	w := telemetry.NewWorker()
	w.ObserveStep(telemetry.Step{Step: 1})
	w.ObserveAllReduce(1, 1)
	c := telemetry.NewCoordinator(2)
	c.Beat(0, 1, 0, 0)
	for _, reg := range []*prometheus.Registry{w.Registry, c.Registry} {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			exported[mf.GetName()] = true
		}
	}
	exported["process_resident_memory_bytes"] = true // the process collector (telemetry.Serve)
	metric := regexp.MustCompile(`\b(hjepa_[a-z_]+|process_[a-z_]+)`)
	n := 0
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_count"), "_sum")
				n++
				if !exported[name] {
					t.Errorf("panel %q queries %s, which nothing exports", p.Title, m)
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("only %d metric references in the dashboard", n)
	}
}
