package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// freePortRun finds n consecutive free ports on 127.0.0.1 (launch gives
// rank r the port base+1+r).
func freePortRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if base+n > 65535 {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				continue
			}
			_ = l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// scrape fetches and parses a /metrics page; nil while it is not served.
func scrape(t *testing.T, port int) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics on %d: %s", port, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics on %d is not the Prometheus text format: %v", port, err)
	}
	return mfs
}

// value is the family's sample with the given labels ("k=v" pairs):
// a gauge's or counter's value, a histogram's count.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		match := true
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestLaunchMetrics scrapes a running `hjepa launch --nproc 2
// --metrics-port P` job: each worker's step advances between two scrapes
// and its all-reduce histogram fills; the coordinator shows the
// generation and both ranks' heartbeats; /healthz and /readyz answer. The
// job is then stopped (SIGTERM).
func TestLaunchMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a multi-process job")
	}
	dir := t.TempDir()
	base := freePortRun(t, 3)
	args := []string{"launch", "--nproc", "2", "--threads", "1", "--device", "cpu", "--config", syntheticCfg, "--out", dir + "/out",
		"--metrics-port", strconv.Itoa(base), "--set", "training.max_steps=100000", "--set", "data.batch_size=8"}
	l := startProc(t, dir, nil, args...)
	rank0 := base + 1

	var first map[string]*dto.MetricFamily
	var step1 float64
	if !poll(t, time.Minute, func() bool {
		first = scrape(t, rank0)
		step1, _ = value(first, "hjepa_train_step")
		return step1 >= 5 || l.exited()
	}) || l.exited() {
		t.Fatalf("rank 0 reported no step on /metrics:\n%s", tail(l.se.String(), 4000))
	}
	var second map[string]*dto.MetricFamily
	var step2 float64
	poll(t, time.Minute, func() bool {
		second = scrape(t, rank0)
		step2, _ = value(second, "hjepa_train_step")
		return step2 > step1 || l.exited()
	})
	if step2 <= step1 {
		t.Fatalf("hjepa_train_step did not advance: %v then %v", step1, step2)
	}
	ar1, _ := value(first, "hjepa_allreduce_seconds")
	ar2, _ := value(second, "hjepa_allreduce_seconds")
	bytes2, _ := value(second, "hjepa_allreduce_bytes_total")
	if ar1 < 1 || ar2 <= ar1 || bytes2 <= 0 {
		t.Fatalf("all-reduce histogram not filling: count %v then %v, bytes %v", ar1, ar2, bytes2)
	}
	for _, name := range []string{"hjepa_train_loss", "hjepa_train_learning_rate", "hjepa_train_step_seconds", "hjepa_train_images_per_second", "go_goroutines"} {
		if _, ok := value(second, name); !ok {
			t.Errorf("rank 0's /metrics lacks %s", name)
		}
	}
	if r, _ := value(second, "hjepa_job_rank"); r != 0 {
		t.Errorf("rank 0 says hjepa_job_rank %v", r)
	}
	if r, ok := value(scrape(t, base+2), "hjepa_job_rank"); !ok || r != 1 {
		t.Errorf("rank 1 says hjepa_job_rank %v (%v)", r, ok)
	}

	// The coordinator hears of steps through heartbeats (every second).
	var co map[string]*dto.MetricFamily
	poll(t, time.Minute, func() bool {
		co = scrape(t, base)
		s0, _ := value(co, "hjepa_rank_step", "rank=0")
		s1, _ := value(co, "hjepa_rank_step", "rank=1")
		return (s0 >= 1 && s1 >= 1) || l.exited()
	})
	if g, _ := value(co, "hjepa_job_generation"); g != 1 {
		t.Errorf("coordinator: hjepa_job_generation %v, want 1", g)
	}
	for _, r := range []string{"0", "1"} {
		if s, ok := value(co, "hjepa_rank_step", "rank="+r); !ok || s < 1 {
			t.Errorf("coordinator: hjepa_rank_step{rank=%s} %v (%v)", r, s, ok)
		}
		if age, ok := value(co, "hjepa_rank_heartbeat_age_seconds", "rank="+r); !ok || age < 0 || age > 10 {
			t.Errorf("coordinator: hjepa_rank_heartbeat_age_seconds{rank=%s} %v (%v)", r, age, ok)
		}
	}
	for _, p := range []int{base, rank0} {
		if code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", p)); code != 200 {
			t.Errorf("/healthz on %d: %d %s", p, code, body)
		}
		if code, body := get(t, fmt.Sprintf("http://127.0.0.1:%d/readyz", p)); code != 200 {
			t.Errorf("/readyz on %d while training: %d %s", p, code, body)
		}
	}
	// A coordinated stop ends the long job: checkpoint, exit 0.
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r := l.wait(t, 3*time.Minute); r.code != 0 {
		t.Fatalf("launch: %s", r)
	}
}
