package train

import "testing"

func TestCollapseMonitor(t *testing.T) {
	type obs struct {
		rank, std float64
		want      []string
	}
	cases := []struct {
		name string
		seq  []obs
	}{
		{"healthy run whose rank first falls, then rises", []obs{
			{10, 0.5, nil}, {6, 0.4, nil}, {9, 0.45, nil}, {40, 0.5, nil}, {35, 0.6, nil}}},
		{"rank collapse after a peak", []obs{
			{10, 0.5, nil}, {40, 0.5, nil}, {9, 0.5, nil}, {7.9, 0.5, []string{"rankme"}}}},
		{"features lose their variance", []obs{
			{10, 0.5, nil}, {10, 0.06, nil}, {10, 0.04, []string{"feature_std"}}}},
		{"both", []obs{{10, 0.5, nil}, {1.5, 0.01, []string{"rankme", "feature_std"}}}},
	}
	for _, c := range cases {
		m := CollapseMonitor{RankFraction: 0.2, StdFraction: 0.1}
		for i, o := range c.seq {
			got := m.Observe(o.rank, o.std)
			if len(got) != len(o.want) {
				t.Errorf("%s: observation %d (%v, %v): alarms %+v, want %v", c.name, i, o.rank, o.std, got, o.want)
				continue
			}
			for j := range got {
				if got[j].Metric != o.want[j] {
					t.Errorf("%s: observation %d: alarm %q, want %q", c.name, i, got[j].Metric, o.want[j])
				}
			}
		}
	}
	// A monitor restored from state.json compares with the saved history,
	// not with its first new observation.
	m := CollapseMonitor{RankFraction: 0.2, StdFraction: 0.1, InitialRank: 10, PeakRank: 50, InitialStd: 0.5}
	if a := m.Observe(9, 0.5); len(a) != 1 || a[0].Metric != "rankme" {
		t.Errorf("restored monitor: alarms %+v, want one on rankme (9 < 0.2*50)", a)
	}
}
