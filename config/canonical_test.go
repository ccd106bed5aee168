package config

import (
	"reflect"
	"strings"
	"testing"
)

// A configuration survives CanonicalJSON -> FromCanonicalJSON unchanged.
func TestFromCanonicalJSONRoundTrip(t *testing.T) {
	c := Default()
	c.Model.Depth = 3
	c.Data.Path = "/data/x y"
	c.Masking.MaskScale = []float64{0.1, 0.25}
	c.Logging.TensorBoard = false
	got, err := FromCanonicalJSON(c.CanonicalJSON(), "state.json")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Flat(), c.Flat()) {
		t.Fatalf("round trip changed the configuration:\n got %v\nwant %v", got.Flat(), c.Flat())
	}
	if _, err := FromCanonicalJSON([]byte(`{"model.depht": 2}`), "ck/state.json"); err == nil || !strings.Contains(err.Error(), "model.depht") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := FromCanonicalJSON([]byte(`[1]`), "ck/state.json"); err == nil || !strings.Contains(err.Error(), "ck/state.json") {
		t.Fatalf("not an object: %v", err)
	}
}
