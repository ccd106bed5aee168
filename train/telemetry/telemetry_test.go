package telemetry

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /readyz follows SetReady; /metrics carries what was observed.
func TestWorkerServer(t *testing.T) {
	w := NewWorker()
	s, err := Serve("127.0.0.1:0", w.Registry, w.Ready)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr()
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not training") {
		t.Fatalf("/readyz before training: %d %q", code, body)
	}
	w.SetJob(3, 1, 4)
	w.SetReady(true, "training")
	w.ObserveStep(Step{Step: 7, Loss: 0.5, LR: 1e-3, Took: 100 * time.Millisecond, Images: 32})
	w.ObserveAllReduce(4096, time.Millisecond)
	if code, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz while training: %d", code)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	_, body := get(t, base+"/metrics")
	for _, want := range []string{"hjepa_train_step 7", "hjepa_train_images_per_second 320", "hjepa_allreduce_bytes_total 4096",
		"hjepa_allreduce_seconds_count 1", "hjepa_job_generation 3", "hjepa_job_rank 1", "process_resident_memory_bytes"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestServeBadAddress(t *testing.T) {
	if _, err := Serve("256.0.0.1:x", NewWorker().Registry, nil); err == nil || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Fatalf("bad address: %v", err)
	}
}

// A nil *Worker or *Coordinator records nothing (metrics off).
func TestNilIsOff(t *testing.T) {
	var w *Worker
	w.ObserveStep(Step{Step: 1})
	w.ObserveAllReduce(1, time.Second)
	w.SetJob(1, 0, 1)
	w.SetReady(true, "")
	var c *Coordinator
	c.Generation(1, true)
	c.Beat(0, 1, 0, 0)
	c.SetReady(true, "")
}
