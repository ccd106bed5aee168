package train

import "fmt"

// CollapseMonitor raises the collapse alarm relative to the run's own
// history, so that no threshold depends on the model, data or run length:
// a representation has collapsed when the centred RankMe of its pooled
// target features falls below a fraction of the highest it has been in this
// run, or their mean per-dimension std below a fraction of its value at
// initialisation. A healthy run whose RankMe drifts, as JEPA runs' does
// early on, stays far above both.
type CollapseMonitor struct {
	// RankFraction and StdFraction are the alarm levels (0: that alarm is
	// off).
	RankFraction float64 `json:"-"`
	StdFraction  float64 `json:"-"`

	// The run's history, kept in state.json so a resumed run compares with
	// the same values.
	InitialRank float64 `json:"initial_rankme"`
	PeakRank    float64 `json:"peak_rankme"`
	InitialStd  float64 `json:"initial_feature_std"`
}

// Alarm is one collapse alarm: what fell, to what, and the level it fell
// below.
type Alarm struct {
	Metric           string
	Value, Threshold float64
	Message          string
}

// Observe takes one validation's centred RankMe and mean per-dimension std
// and returns the alarms they raise. The first observation (at step 0 in a
// new run) is the initialisation's.
func (c *CollapseMonitor) Observe(rank, std float64) []Alarm {
	if c.InitialRank == 0 && c.PeakRank == 0 && c.InitialStd == 0 {
		c.InitialRank, c.PeakRank, c.InitialStd = rank, rank, std
		return nil
	}
	c.PeakRank = max(c.PeakRank, rank)
	var out []Alarm
	if t := c.RankFraction * c.PeakRank; c.RankFraction > 0 && rank < t {
		out = append(out, Alarm{Metric: "rankme", Value: rank, Threshold: t,
			Message: fmt.Sprintf("collapse alarm: RankMe of target features fell to %.3g, below %.2g of the run's peak %.3g", rank, c.RankFraction, c.PeakRank)})
	}
	if t := c.StdFraction * c.InitialStd; c.StdFraction > 0 && std < t {
		out = append(out, Alarm{Metric: "feature_std", Value: std, Threshold: t,
			Message: fmt.Sprintf("collapse alarm: target features have almost no variance across images (mean per-dimension std %.3g, below %.2g of its initial %.3g)", std, c.StdFraction, c.InitialStd)})
	}
	return out
}
