package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// WriteRow writes one finished row as a line: linear probe accuracy and L2,
// kNN accuracy ("skipped" when the row has no kNN, KNNK 0), centred RankMe
// (and its fraction of the width, and the uncentred value), images and time.
func WriteRow(w io.Writer, r Report) {
	knn := fmt.Sprintf("%.2f%%", 100*r.KNNAccuracy)
	if r.KNNK == 0 {
		knn = "skipped"
	}
	fmt.Fprintf(w, "%-8s linear probe %.2f%% (L2 %g)  kNN %s  RankMe %.1f (%.2f of D=%d; uncentred %.1f)  [%d train / %d test images, %.0fs]\n",
		r.Name, 100*r.ProbeAccuracy, r.ProbeL2, knn, r.RankMe, r.RankMeFraction, r.Dim, r.RankMeRaw, r.TrainImages, r.TestImages, r.Seconds)
}

// WriteTable writes the rows side by side, with each encoder's gain over the
// initialisation and over the pixels (probe and kNN, in points) where those
// rows exist, then the protocol of the first row. reports is not empty.
func WriteTable(w io.Writer, reports []Report) {
	base := map[string]Report{}
	for _, r := range reports {
		base[r.Name] = r
	}
	fmt.Fprintf(w, "\n%-8s  %12s  %8s  %7s  %-22s  %s\n", "row", "linear probe", "kNN", "RankMe", "vs init (probe, kNN)", "vs pixels (probe, kNN)")
	diff := func(r Report, name string) string {
		b, ok := base[name]
		if !ok || r.Name == name || r.Encoder == "pixels" {
			return ""
		}
		return fmt.Sprintf("%+.2f, %+.2f", 100*(r.ProbeAccuracy-b.ProbeAccuracy), 100*(r.KNNAccuracy-b.KNNAccuracy))
	}
	for _, r := range reports {
		fmt.Fprintf(w, "%-8s  %11.2f%%  %7.2f%%  %7.1f  %-22s  %s\n", r.Name, 100*r.ProbeAccuracy, 100*r.KNNAccuracy, r.RankMe, diff(r, "init"), diff(r, "pixels"))
	}
	r := reports[0]
	fmt.Fprintf(w, "protocol: mean-pooled features; the probe (L2 chosen on a held-out tenth) and kNN (k=%d) learn from the first %d training images and are scored on %d test images; RankMe is centred, on the test features\n", r.KNNK, r.TrainImages, r.TestImages)
}

// MarshalReports is the JSON of an evaluation, indented, with a final
// newline: one row's report as an object, or several keyed by row name
// ({"context": {...}, "init": {...}, "pixels": {...}, "trained": {...}},
// keys sorted).
func MarshalReports(reports []Report) ([]byte, error) {
	if len(reports) == 0 {
		return nil, errors.New("eval: no reports")
	}
	var v any = reports[0]
	if len(reports) > 1 {
		byName := map[string]Report{}
		for _, r := range reports {
			byName[r.Name] = r
		}
		v = byName
	}
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(js, '\n'), nil
}

// WriteJSON writes MarshalReports(reports) to the file path.
func WriteJSON(path string, reports []Report) error {
	js, err := MarshalReports(reports)
	if err == nil {
		err = os.WriteFile(path, js, 0o644)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
