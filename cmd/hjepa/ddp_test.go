package main

// Distributed end-to-end tests: a real coordinator and real workers (the
// hjepa binary's `coordinator`, `worker` and `launch` commands) on
// 127.0.0.1, in temporary directories.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// ddpSteps is the length of the distributed runs: 20 steps of the synthetic
// set (32 steps per epoch at global batch 16).
const ddpSteps = 20

// ddpSets are the synthetic preset for ddpSteps steps (its VICReg term's
// batch statistics cover the global batch, so runs are comparable across
// world sizes); later sets win.
func ddpSets(sets ...string) []string {
	return append([]string{fmt.Sprintf("training.max_steps=%d", ddpSteps)}, sets...)
}

const testToken = "0123456789abcdef0123456789abcdef"

// proc is a started hjepa process with its output.
type proc struct {
	cmd  *exec.Cmd
	so   *bytes.Buffer
	se   *lockedBuffer // readable while the process runs (its log)
	done chan struct{}
	res  result
}

// lockedBuffer is a bytes.Buffer safe to read while a process writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startProc(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	c, so, _ := hjepaCmd(dir, env, args...)
	se := &lockedBuffer{}
	c.Stderr = se
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: c, so: so, se: se, done: make(chan struct{})}
	go func() {
		err := c.Wait()
		p.res = result{stdout: so.String(), stderr: se.String(), code: c.ProcessState.ExitCode()}
		if _, ok := err.(*exec.ExitError); err != nil && !ok {
			p.res.code = -2
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = c.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process to exit within d.
func (p *proc) wait(t *testing.T, d time.Duration) result {
	t.Helper()
	select {
	case <-p.done:
		return p.res
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%v did not exit within %v:\n%s", p.cmd.Args[1:3], d, p.res)
		return p.res
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startCoordinator starts `hjepa coordinator` on a free port and returns it
// with its address.
func startCoordinator(t *testing.T, dir, out string, world int, sets []string, extra ...string) (*proc, string) {
	t.Helper()
	addrFile := filepath.Join(dir, fmt.Sprintf("coord-%d.addr", time.Now().UnixNano()))
	args := []string{"coordinator", "--world-size", fmt.Sprint(world), "--listen", "127.0.0.1:0", "--addr-file", addrFile,
		"--config", syntheticCfg, "--out", out, "--heartbeat-interval", "200ms", "--heartbeat-timeout", "3s"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	args = append(args, extra...)
	p := startProc(t, dir, []string{"HJEPA_JOB_TOKEN=" + testToken}, args...)
	var addr string
	if !poll(t, 60*time.Second, func() bool {
		b, err := os.ReadFile(addrFile)
		addr = strings.TrimSpace(string(b))
		return err == nil && addr != "" || p.exited()
	}) || p.exited() {
		t.Fatalf("coordinator did not start:\n%s", p.res)
	}
	return p, addr
}

// startWorker starts `hjepa worker` (1 CPU thread) against addr.
func startWorker(t *testing.T, dir, addr string, rank int, extra ...string) *proc {
	t.Helper()
	args := []string{"worker", "--coordinator", addr, "--threads", "1", "--device", "cpu"}
	if rank >= 0 {
		args = append(args, "--rank", fmt.Sprint(rank))
	}
	args = append(args, extra...)
	return startProc(t, dir, []string{"HJEPA_JOB_TOKEN=" + testToken}, args...)
}

// readModel reads the model tensors of out's latest checkpoint.
func readModel(t *testing.T, out string) []checkpoint.Tensor {
	t.Helper()
	ck, err := checkpoint.Read(filepath.Join(out, "checkpoints", checkpoint.LatestName))
	if err != nil {
		t.Fatal(err)
	}
	return ck.Model
}

// relDiff is the relative L2 difference of two checkpoints' tensors, all
// together, and the worst tensor's.
func relDiff(t *testing.T, a, b []checkpoint.Tensor) (all, worst float64, worstName string) {
	t.Helper()
	byName := map[string]checkpoint.Tensor{}
	for _, x := range b {
		byName[x.Name] = x
	}
	var num, den float64
	for _, x := range a {
		y, ok := byName[x.Name]
		if !ok || len(y.Data) != len(x.Data) {
			t.Fatalf("tensor %s missing or of another size", x.Name)
		}
		var n, d float64
		for i := range x.Data {
			e := float64(x.Data[i]) - float64(y.Data[i])
			n += e * e
			d += float64(x.Data[i]) * float64(x.Data[i])
		}
		num, den = num+n, den+d
		if r := math.Sqrt(n / math.Max(d, 1e-30)); r > worst {
			worst, worstName = r, x.Name
		}
	}
	return math.Sqrt(num / den), worst, worstName
}

// TestDDPEquivalentToOneProcess: world 2 with batch 8 per worker trains
// the same model as one process with batch 16 (same seed, data order and
// masks), without VICReg and with the demo's VICReg (two views, invariance,
// a projector; its batch statistics gathered over the replicas): per-step
// losses (and their JEPA and VICReg parts) and final parameters agree within
// 1e-5 relative. (A parameter whose true gradient is zero, like a bias
// before a shift-invariant loss, would fail this: Adam turns its rounding
// noise into full steps, which is why the projector's last layer has none.)
func TestDDPEquivalentToOneProcess(t *testing.T) {
	for _, c := range []struct {
		name     string
		vicreg   string
		paramTol float64
	}{{"vicreg_off", "loss.vicreg.weight=0", 1e-5}, {"vicreg_on", "loss.vicreg.weight=1", 1e-5}} {
		// With VICReg on, the demo's recipe: two views, the invariance term
		// and a projector.
		sets := []string{c.vicreg}
		if c.vicreg != "loss.vicreg.weight=0" {
			sets = append(sets, "data.augmentation.views=2", "loss.vicreg.invariance_coeff=5", "loss.vicreg.projector_dim=24")
		}
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			one := filepath.Join(root, "one")
			mustSucceed(t, root, trainArgs(one, ddpSets(append(sets, "data.batch_size=16")...)...)...)

			two := filepath.Join(root, "two")
			args := []string{"launch", "--nproc", "2", "--threads", "1", "--device", "cpu", "--config", syntheticCfg, "--out", two}
			// Buckets of ~1.3k and ~2.6k gradients (the model has 24k): several
			// buckets, each reduced while backward still runs.
			for _, s := range ddpSets(append(sets, "data.batch_size=8", "distributed.first_bucket_mib=0.005", "distributed.bucket_mib=0.01")...) {
				args = append(args, "--set", s)
			}
			r := mustSucceed(t, root, args...)
			for _, want := range []string{"[coordinator]", "[rank 0]", "[rank 1]"} {
				if !strings.Contains(r.stderr, want) {
					t.Errorf("launch output has no %q lines:\n%s", want, tail(r.stderr, 3000))
				}
			}

			a := trainRows(t, readMetrics(t, filepath.Join(one, "metrics.jsonl")), "world 1")
			b := trainRows(t, readMetrics(t, filepath.Join(two, "metrics.jsonl")), "world 2")
			if len(a) != ddpSteps || len(b) != ddpSteps {
				t.Fatalf("training rows: world 1 has %d, world 2 has %d, want %d each", len(a), len(b), ddpSteps)
			}
			keys := []string{"loss", "jepa_loss"}
			if c.vicreg != "loss.vicreg.weight=0" {
				keys = append(keys, "vicreg")
			}
			worstLoss := 0.0
			for s := int64(1); s <= ddpSteps; s++ {
				for _, key := range keys {
					la, lb := a[s][key], b[s][key]
					if la == 0 {
						t.Fatalf("step %d: world 1 logged %s 0", s, key)
					}
					rel := math.Abs(la-lb) / math.Abs(la)
					worstLoss = math.Max(worstLoss, rel)
					if rel > 1e-5 {
						t.Errorf("step %d: %s %.9g (world 1) vs %.9g (world 2): relative difference %.2e > 1e-5", s, key, la, lb, rel)
					}
				}
			}
			all, worst, name := relDiff(t, readModel(t, one), readModel(t, two))
			t.Logf("worst per-step loss difference %.2e; final parameters: relative L2 %.2e over the model, worst tensor %s %.2e", worstLoss, all, name, worst)
			if all > c.paramTol {
				t.Errorf("final parameters differ: relative L2 %.2e > %g (worst tensor %s: %.2e)", all, c.paramTol, name, worst)
			}
		})
	}
}

// ddpRun runs a world-2 job to completion with coordinator and workers
// started by the test, and returns its output directory.
func ddpReference(t *testing.T, root string, sets []string) string {
	t.Helper()
	out := filepath.Join(root, "reference")
	coord, addr := startCoordinator(t, root, out, 2, sets)
	w0, w1 := startWorker(t, root, addr, 0), startWorker(t, root, addr, 1)
	for _, p := range []*proc{w0, w1, coord} {
		if r := p.wait(t, 3*time.Minute); r.code != 0 {
			t.Fatalf("reference run: %v exited %d:\n%s", p.cmd.Args[1], r.code, r)
		}
	}
	return out
}

// TestDDPWorkerKilledRestartsFromCheckpoint: SIGKILL of one worker in the
// middle of training -> the other stops within the deadline (no hang), the
// coordinator aborts the generation and, once a replacement registers,
// restarts every rank from the last checkpoint; the job completes with the
// parameters of an uninterrupted run, bit for bit.
func TestDDPWorkerKilledRestartsFromCheckpoint(t *testing.T) {
	root := t.TempDir()
	sets := ddpSets("data.batch_size=8", "checkpoint.every_steps=5")
	ref := ddpReference(t, root, sets)

	out := filepath.Join(root, "killed")
	coord, addr := startCoordinator(t, root, out, 2, sets)
	w0, w1 := startWorker(t, root, addr, 0), startWorker(t, root, addr, 1)
	// Kill rank 1 once the step-10 checkpoint exists and training goes on.
	if !poll(t, 2*time.Minute, func() bool {
		s, ok := stateStep(filepath.Join(out, "checkpoints", checkpoint.PeriodicName("step", 10)))
		return ok && s == 10 || coord.exited()
	}) || coord.exited() {
		t.Fatalf("no step-10 checkpoint:\n%s\n%s", coord.res, w0.res)
	}
	_ = w1.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	w1.wait(t, 30*time.Second)
	// The survivor's generation is aborted; it stays to rejoin.
	if !poll(t, 30*time.Second, func() bool {
		return strings.Contains(w0.se.String(), "generation aborted") || strings.Contains(w0.se.String(), "aborted the generation")
	}) {
		t.Fatalf("rank 0 did not notice the lost peer within 30 s:\n%s", tail(w0.se.String(), 3000))
	}
	t.Logf("rank 0 saw the abort %.1fs after the kill", time.Since(killed).Seconds())
	w1b := startWorker(t, root, addr, -1) // a replacement takes the free rank
	for _, p := range []*proc{w0, w1b, coord} {
		if r := p.wait(t, 3*time.Minute); r.code != 0 {
			t.Fatalf("%v exited %d:\n%s\ncoordinator:\n%s", p.cmd.Args[1], r.code, r, tail(coord.se.String(), 3000))
		}
	}
	if !strings.Contains(coord.se.String(), "generation") {
		t.Errorf("coordinator log does not mention the new generation:\n%s", tail(coord.se.String(), 3000))
	}
	sameTensors(t, "final model (restarted vs uninterrupted)", readModel(t, out), readModel(t, ref))
	a := trainRows(t, readMetrics(t, filepath.Join(out, "metrics.jsonl")), "restarted")
	b := trainRows(t, readMetrics(t, filepath.Join(ref, "metrics.jsonl")), "reference")
	for s := int64(1); s <= ddpSteps; s++ {
		if a[s]["loss"] != b[s]["loss"] {
			t.Errorf("step %d: loss %v (restarted) vs %v (uninterrupted)", s, a[s]["loss"], b[s]["loss"])
		}
	}
}

// TestDDPStoppedWorkerDetectedByHeartbeat: a SIGSTOPped worker keeps its
// connections open but stops beating: the coordinator declares it lost
// after the heartbeat timeout and aborts the generation.
func TestDDPStoppedWorkerDetectedByHeartbeat(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "out")
	coord, addr := startCoordinator(t, root, out, 2, ddpSets("data.batch_size=8", "training.max_steps=100000"))
	w0, w1 := startWorker(t, root, addr, 0), startWorker(t, root, addr, 1)
	if !poll(t, 2*time.Minute, func() bool {
		_, err := os.Stat(filepath.Join(out, "metrics.jsonl"))
		return err == nil || coord.exited()
	}) || coord.exited() {
		t.Fatalf("training did not start:\n%s", coord.res)
	}
	_ = w1.cmd.Process.Signal(syscall.SIGSTOP)
	stopped := time.Now()
	defer func() { _ = w1.cmd.Process.Signal(syscall.SIGCONT) }()
	if !poll(t, 60*time.Second, func() bool {
		return strings.Contains(w0.se.String(), "aborted")
	}) {
		t.Fatalf("rank 0 was not told of the stopped peer:\ncoordinator:\n%s\nrank 0:\n%s", tail(coord.se.String(), 3000), tail(w0.se.String(), 3000))
	}
	t.Logf("abort %.1fs after SIGSTOP (heartbeat timeout 3s)", time.Since(stopped).Seconds())
	// The coordinator's log is read as it comes: rank 0's abort can be seen
	// before the coordinator's line saying why.
	if !poll(t, 30*time.Second, func() bool { return strings.Contains(coord.se.String(), "heartbeat") }) {
		t.Errorf("coordinator does not say the worker missed its heartbeats:\n%s", tail(coord.se.String(), 3000))
	}
	_ = coord.cmd.Process.Signal(syscall.SIGKILL)
}

// TestDDPCoordinatorKilled: the workers exit non-zero within the deadline
// with a message naming the coordinator, and the checkpoints stay intact.
func TestDDPCoordinatorKilled(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "out")
	coord, addr := startCoordinator(t, root, out, 2, ddpSets("data.batch_size=8", "training.max_steps=100000", "checkpoint.every_steps=3"))
	w0, w1 := startWorker(t, root, addr, 0), startWorker(t, root, addr, 1)
	if !poll(t, 2*time.Minute, func() bool {
		s, ok := stateStep(filepath.Join(out, "checkpoints", checkpoint.PeriodicName("step", 3)))
		return ok && s == 3 || coord.exited()
	}) || coord.exited() {
		t.Fatalf("no checkpoint:\n%s", coord.res)
	}
	_ = coord.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	for _, w := range []*proc{w0, w1} {
		r := w.wait(t, 30*time.Second)
		if r.code == 0 || !strings.Contains(r.stderr, "coordinator") || !strings.Contains(r.stderr, "intact") {
			t.Errorf("worker: exit %d, want non-zero with a message about the coordinator and intact checkpoints:\n%s", r.code, tail(r.stderr, 2000))
		}
	}
	t.Logf("workers exited %.1fs after the coordinator was killed", time.Since(killed).Seconds())
	m := &checkpoint.Manager{Dir: filepath.Join(out, "checkpoints")}
	dir, ok, warning, err := m.Latest()
	if err != nil || !ok || warning != "" {
		t.Fatalf("checkpoints after the coordinator died: %q ok=%v warning=%q err=%v", dir, ok, warning, err)
	}
}

// TestDDPStopWhileWaiting: SIGTERM to the coordinator while a worker waits
// for the others stops the job, and the waiting worker is told so and
// exits 0 like the coordinator (not as a refused registration).
func TestDDPStopWhileWaiting(t *testing.T) {
	root := t.TempDir()
	coord, addr := startCoordinator(t, root, filepath.Join(root, "out"), 2, ddpSets())
	w := startWorker(t, root, addr, -1)
	if !poll(t, time.Minute, func() bool { return strings.Contains(coord.se.String(), "worker registered") || coord.exited() }) || coord.exited() {
		t.Fatalf("the worker did not register:\n%s", coord.res)
	}
	_ = coord.cmd.Process.Signal(syscall.SIGTERM)
	if r := coord.wait(t, 30*time.Second); r.code != 0 {
		t.Fatalf("coordinator: exit %d, want 0:\n%s", r.code, tail(r.stderr, 2000))
	}
	r := w.wait(t, 30*time.Second)
	if r.code != 0 || !strings.Contains(r.stderr, "job finished before this worker joined a generation") || !strings.Contains(r.stderr, "stopped while waiting for workers") {
		t.Fatalf("waiting worker: exit %d, want 0 saying the job stopped while it waited:\n%s", r.code, tail(r.stderr, 2000))
	}
}

// TestDDPBadPeersRefused: a worker with the wrong token, another
// configuration, or a rank already taken is refused with a clear error,
// and the job goes on to complete.
func TestDDPBadPeersRefused(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "out")
	coord, addr := startCoordinator(t, root, out, 2, ddpSets("data.batch_size=8"))
	w0 := startWorker(t, root, addr, 0)
	// While waiting for rank 1: wrong token, other configuration.
	bad := startProc(t, root, []string{"HJEPA_JOB_TOKEN=not-the-token"}, "worker", "--coordinator", addr, "--device", "cpu")
	if r := bad.wait(t, time.Minute); r.code == 0 || !strings.Contains(r.stderr, "token") {
		t.Errorf("wrong token: exit %d, want non-zero naming the token:\n%s", r.code, tail(r.stderr, 2000))
	}
	other := startWorker(t, root, addr, -1, "--config", syntheticCfg, "--set", "training.lr=0.5")
	if r := other.wait(t, time.Minute); r.code == 0 || !strings.Contains(r.stderr, "digest") {
		t.Errorf("other configuration: exit %d, want non-zero naming the config digest:\n%s", r.code, tail(r.stderr, 2000))
	}
	dup := startWorker(t, root, addr, 0)
	if r := dup.wait(t, time.Minute); r.code == 0 || !strings.Contains(r.stderr, "rank 0") {
		t.Errorf("duplicate rank: exit %d, want non-zero naming rank 0:\n%s", r.code, tail(r.stderr, 2000))
	}
	// The same configuration given explicitly is accepted.
	w1 := startWorker(t, root, addr, 1, "--config", syntheticCfg, "--set", "loss.vicreg.weight=0", "--set", fmt.Sprintf("training.max_steps=%d", ddpSteps), "--set", "data.batch_size=8")
	for _, p := range []*proc{w0, w1, coord} {
		if r := p.wait(t, 3*time.Minute); r.code != 0 {
			t.Fatalf("%v exited %d:\n%s", p.cmd.Args[1], r.code, r)
		}
	}
}

// TestDDPSIGTERMCheckpointsAndResumes: SIGTERM to one worker -> all ranks
// stop after the same step with a checkpoint, every process exits 0, and a
// resumed job ends with the parameters of an uninterrupted one.
func TestDDPSIGTERMCheckpointsAndResumes(t *testing.T) {
	root := t.TempDir()
	sets := ddpSets("data.batch_size=8")
	ref := ddpReference(t, root, sets)

	out := filepath.Join(root, "stopped")
	coord, addr := startCoordinator(t, root, out, 2, sets)
	w0, w1 := startWorker(t, root, addr, 0), startWorker(t, root, addr, 1)
	if !poll(t, 2*time.Minute, func() bool {
		rows, _ := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
		return bytes.Count(rows, []byte("\n")) >= 5 || coord.exited()
	}) || coord.exited() {
		t.Fatalf("training did not start:\n%s", coord.res)
	}
	_ = w1.cmd.Process.Signal(syscall.SIGTERM)
	for _, p := range []*proc{w0, w1, coord} {
		if r := p.wait(t, time.Minute); r.code != 0 {
			t.Fatalf("after SIGTERM %v exited %d:\n%s", p.cmd.Args[1], r.code, r)
		}
	}
	step, ok := stateStep(filepath.Join(out, "checkpoints", checkpoint.LatestName))
	if !ok || step <= 0 || step >= ddpSteps {
		t.Fatalf("checkpoint after SIGTERM at step %d (ok=%v), want one strictly inside the run", step, ok)
	}
	coord2, addr2 := startCoordinator(t, root, out, 2, sets, "--resume")
	w0, w1 = startWorker(t, root, addr2, 0), startWorker(t, root, addr2, 1)
	for _, p := range []*proc{w0, w1, coord2} {
		if r := p.wait(t, 3*time.Minute); r.code != 0 {
			t.Fatalf("resumed %v exited %d:\n%s", p.cmd.Args[1], r.code, r)
		}
	}
	sameTensors(t, "final model (stopped+resumed vs uninterrupted)", readModel(t, out), readModel(t, ref))
}

// writeTestPKI writes a CA and one certificate for 127.0.0.1 usable as
// server and client (coordinator and workers share it here) into dir.
func writeTestPKI(t *testing.T, dir string) (ca, cert, key string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "job CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k := newKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "worker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", kder)
}

// TestDDPMutualTLS: coordinator, workers and the ring all speak mutual TLS
// (and still check the token); a worker without a certificate is refused.
func TestDDPMutualTLS(t *testing.T) {
	root := t.TempDir()
	ca, cert, key := writeTestPKI(t, root)
	tls := []string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", ca}
	out := filepath.Join(root, "out")
	coord, addr := startCoordinator(t, root, out, 2, ddpSets("data.batch_size=8"), tls...)
	plain := startWorker(t, root, addr, 0, "--connect-timeout", "3s")
	if r := plain.wait(t, time.Minute); r.code == 0 {
		t.Errorf("a worker without TLS joined a mutual-TLS job:\n%s", r)
	}
	noCert := startWorker(t, root, addr, 0, "--tls-ca", ca, "--connect-timeout", "3s")
	if r := noCert.wait(t, time.Minute); r.code == 0 {
		t.Errorf("a worker without a client certificate joined a mutual-TLS job:\n%s", r)
	}
	w0, w1 := startWorker(t, root, addr, 0, tls...), startWorker(t, root, addr, 1, tls...)
	for _, p := range []*proc{w0, w1, coord} {
		if r := p.wait(t, 3*time.Minute); r.code != 0 {
			t.Fatalf("%v exited %d:\n%s", p.cmd.Args[1], r.code, r)
		}
	}
	if rows := trainRows(t, readMetrics(t, filepath.Join(out, "metrics.jsonl")), "mTLS"); len(rows) != ddpSteps {
		t.Fatalf("%d training rows, want %d", len(rows), ddpSteps)
	}
}

// TestLaunchRestartsKilledWorker: `hjepa launch` starts a worker that died
// again, the coordinator forms generation 2 from the last checkpoint, and
// launch exits 0 when the job completes.
func TestLaunchRestartsKilledWorker(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "out")
	args := []string{"launch", "--nproc", "2", "--threads", "1", "--device", "cpu", "--config", syntheticCfg, "--out", out}
	for _, s := range ddpSets("data.batch_size=8", "training.max_steps=150", "checkpoint.every_steps=10") {
		args = append(args, "--set", s)
	}
	l := startProc(t, root, nil, args...)
	pid := 0
	if !poll(t, 2*time.Minute, func() bool {
		for _, line := range strings.Split(l.se.String(), "\n") {
			if strings.Contains(line, "started") && strings.Contains(line, `"rank 1"`) {
				_, after, _ := strings.Cut(line, `"pid": `)
				fmt.Sscanf(after, "%d", &pid)
			}
		}
		s, ok := stateStep(filepath.Join(out, "checkpoints", checkpoint.PeriodicName("step", 20)))
		return pid > 0 && ok && s == 20 || l.exited()
	}) || l.exited() || pid == 0 {
		t.Fatalf("launch did not reach step 20 (rank 1 pid %d):\n%s", pid, l.res)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := l.wait(t, 3*time.Minute)
	if r.code != 0 {
		t.Fatalf("launch after a killed worker: %s", r)
	}
	for _, want := range []string{`"restart": 1`, `"generation": 2`, "completed at step 150"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("launch output lacks %q:\n%s", want, tail(r.stderr, 4000))
		}
	}
}

// launchedPid returns the pid of launch's latest incarnation of the named
// worker ("rank 1") from launch's "started" lines, 0 when none.
func launchedPid(out, name string) int {
	pid := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "started") && strings.Contains(line, `"`+name+`"`) {
			_, after, _ := strings.Cut(line, `"pid": `)
			fmt.Sscanf(after, "%d", &pid)
		}
	}
	return pid
}

// TestLaunchReplacesFrozenWorker: a SIGSTOPped worker of `hjepa launch` is
// declared lost by the coordinator (heartbeat timeout); launch kills it and
// starts another, and the job completes from the last checkpoint instead of
// waiting for the frozen process forever (issue 14).
func TestLaunchReplacesFrozenWorker(t *testing.T) {
	root := t.TempDir()
	out := filepath.Join(root, "out")
	args := []string{"launch", "--nproc", "2", "--threads", "1", "--device", "cpu", "--config", syntheticCfg, "--out", out,
		"--coordinator-flag=--heartbeat-interval=200ms", "--coordinator-flag=--heartbeat-timeout=3s"}
	for _, s := range ddpSets("data.batch_size=8", "training.max_steps=60", "checkpoint.every_steps=10") {
		args = append(args, "--set", s)
	}
	l := startProc(t, root, nil, args...)
	pid := 0
	if !poll(t, 2*time.Minute, func() bool {
		pid = launchedPid(l.se.String(), "rank 1")
		s, ok := stateStep(filepath.Join(out, "checkpoints", checkpoint.PeriodicName("step", 10)))
		return pid > 0 && ok && s == 10 || l.exited()
	}) || l.exited() || pid == 0 {
		t.Fatalf("launch did not reach step 10 (rank 1 pid %d):\n%s", pid, l.res)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	frozen := time.Now()
	// Heartbeat timeout 3 s, restart delay 1 s, then at most 50 steps.
	r := l.wait(t, 2*time.Minute)
	if r.code != 0 {
		t.Fatalf("launch after a frozen worker: %s", r)
	}
	t.Logf("job completed %.1fs after SIGSTOP", time.Since(frozen).Seconds())
	for _, want := range []string{"heartbeat", `"restart": 1`, `"generation": 2`, "completed at step 60"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("launch output lacks %q:\n%s", want, tail(r.stderr, 4000))
		}
	}
	if syscall.Kill(pid, 0) == nil {
		t.Errorf("the frozen worker (pid %d) outlived the job", pid)
	}
}
