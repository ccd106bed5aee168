package k8s

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// e2eSteps is long enough that rank 1, killed once the first checkpoint
// (every 10 steps) exists, dies mid-run: a few seconds of synthetic-test.
const e2eSteps = 400

// TestIndexedJobOnLocalhost runs deploy/k8s's coordinator and its two
// workers as processes on 127.0.0.1, each with the args and environment its
// pod would get: the container's env with the Secret's value, the service
// links the kubelet adds unless enableServiceLinks is false,
// JOB_COMPLETION_INDEX, and $(VAR) expanded as Kubernetes does. Cluster
// names resolve as DNS and kube-proxy would, to 127.0.0.1 and a free port
// per container port; /out is one directory (the claim), /configs the
// repository's configs/ (the image's). The only changes: --device=cpu, one
// thread, and the steps. Rank 1 is SIGKILLed after the first checkpoint;
// its exit status (137) must be one the Job's podFailurePolicy replaces,
// and the replacement, started like the Job controller's (same index),
// must rejoin: generation 2 resumes from the checkpoint and every process
// exits 0, so both Jobs complete.
func TestIndexedJobOnLocalhost(t *testing.T) {
	s := mustLoad(t)
	if probs := checkWiring(&s.deployment); len(probs) > 0 {
		t.Fatalf("the manifests are miswired (TestManifestsWiring): %q", probs)
	}
	coord, workers, err := s.roles()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	bin := buildHjepa(t, root)
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		t.Fatal(err)
	}
	c := &cluster{d: &s.deployment, secrets: map[string]map[string]string{}, claims: map[string]string{}, root: root}
	for name, keys := range s.secrets {
		c.secrets[name] = map[string]string{}
		for _, k := range keys {
			c.secrets[name][k] = hex.EncodeToString(token)
		}
	}
	configs, err := filepath.Abs(filepath.Join("..", "..", "configs"))
	if err != nil {
		t.Fatal(err)
	}
	c.paths = map[string]string{"/configs": configs} // deploy/Dockerfile: COPY configs /configs

	cp := c.addPod(t, coord, coord.job.Name, -1)
	world := int(*workers.job.Spec.Completions)
	wp := make([]*pod, world)
	for i := range wp {
		wp[i] = c.addPod(t, workers, fmt.Sprintf("%s-%d", workers.job.Name, i), i)
	}
	out := c.hostPath(t, cp, mustFlag(t, coord, "out"))

	// Few steps, a checkpoint soon; --set's later values win.
	coordProc := c.start(t, bin, cp, "--set=training.max_steps="+strconv.Itoa(e2eSteps), "--set=data.batch_size=8", "--set=checkpoint.every_steps=10")
	procs := make([]*proc, world)
	for i, p := range wp {
		procs[i] = c.start(t, bin, p, "--threads=1")
	}
	dump := func() {
		t.Logf("coordinator:\n%s", tail(coordProc.log.String(), 3000))
		for i, p := range procs {
			t.Logf("%s:\n%s", wp[i].hostname, tail(p.log.String(), 3000))
		}
	}

	latest := filepath.Join(out, "checkpoints", checkpoint.LatestName)
	if !poll(3*time.Minute, func() bool {
		_, err := os.Stat(latest)
		return err == nil || coordProc.exited()
	}) || coordProc.exited() {
		dump()
		if coordProc.exited() {
			t.Fatalf("the coordinator exited %d before the first checkpoint", coordProc.code)
		}
		t.Fatalf("no checkpoint at %s within 3 minutes", latest)
	}
	victim := world - 1
	if procs[victim].exited() {
		dump()
		t.Fatalf("rank %d exited before it could be killed (raise e2eSteps)", victim)
	}
	_ = procs[victim].cmd.Process.Signal(syscall.SIGKILL)
	code := procs[victim].wait(t, time.Minute)
	if code != 137 {
		dump()
		t.Fatalf("the killed worker's container would exit %d, want 137", code)
	}
	failed := 1
	if a := failureAction(workers.job, workers.container.Name, int32(code), ""); a != batchv1.PodFailurePolicyActionCount || failed > int(*workers.job.Spec.BackoffLimit) {
		t.Fatalf("the Job would not replace a pod that exited %d (action %s, backoffLimit %d)", code, a, *workers.job.Spec.BackoffLimit)
	}
	// The Job controller replaces the pod after its backoff (10 s); here,
	// once the coordinator has aborted the generation.
	if !poll(time.Minute, func() bool { return strings.Contains(coordProc.log.String(), "generation aborted") }) {
		dump()
		t.Fatal("the coordinator did not abort the generation within a minute of the kill")
	}
	replaced := procs[victim]
	procs[victim] = c.start(t, bin, wp[victim], "--threads=1")

	for _, p := range append([]*proc{coordProc}, procs...) {
		if code := p.wait(t, 5*time.Minute); code != 0 {
			dump()
			t.Fatalf("%s exited %d, want 0", p.name, code)
		}
	}
	log := coordProc.log.String()
	for _, want := range []string{
		`"generation": 2, "world_size": 2, "resume": true`,
		fmt.Sprintf("completed at step %d", e2eSteps),
	} {
		if !strings.Contains(log, want) {
			dump()
			t.Fatalf("the coordinator's log lacks %q", want)
		}
	}
	assigned := regexp.MustCompile(`assigned\s+\{"rank": (\d+)`)
	for i, p := range append(procs, replaced) {
		idx := min(i, victim)
		got := assigned.FindAllStringSubmatch(p.log.String(), -1)
		if len(got) == 0 {
			t.Errorf("%s: no assignment in its log", p.name)
		}
		for _, m := range got {
			if m[1] != strconv.Itoa(idx) {
				t.Errorf("%s (JOB_COMPLETION_INDEX=%d) was assigned rank %s", p.name, idx, m[1])
			}
		}
	}
	if err := checkpoint.Verify(latest); err != nil {
		t.Errorf("the final checkpoint: %v", err)
	}
}

// cluster is what the test emulates of Kubernetes: the kubelet's
// environment and volumes, cluster DNS and kube-proxy.
type cluster struct {
	d       *deployment
	secrets map[string]map[string]string // Secret -> key -> value
	claims  map[string]string            // claim -> host directory
	paths   map[string]string            // image path -> host path
	root    string
	pods    []*pod
}

// pod is one pod: its hostname, completion index (-1: not an Indexed
// Job's), and the host port standing for each of its container ports.
type pod struct {
	hostname string
	role     *role
	index    int
	ports    map[int32]int
}

func (c *cluster) addPod(t *testing.T, r *role, hostname string, index int) *pod {
	t.Helper()
	p := &pod{hostname: hostname, role: r, index: index, ports: map[int32]int{}}
	for _, cp := range r.container.Ports {
		p.ports[cp.ContainerPort] = freePort(t)
	}
	c.pods = append(c.pods, p)
	return p
}

// environment is the container's environment as the kubelet makes it:
// KUBERNETES_SERVICE_*, the service links (unless enableServiceLinks is
// false), the container's env in order, each value expanded with the ones
// before it, and the Job controller's JOB_COMPLETION_INDEX.
func (c *cluster) environment(t *testing.T, p *pod) ([]string, map[string]string) {
	t.Helper()
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	set("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	set("KUBERNETES_SERVICE_PORT", "443")
	if sl := p.role.pod.EnableServiceLinks; sl == nil || *sl {
		for i, svc := range c.d.services {
			if svc.Spec.ClusterIP == corev1.ClusterIPNone || len(svc.Spec.Ports) == 0 {
				continue
			}
			prefix := strings.ToUpper(strings.ReplaceAll(svc.Name, "-", "_"))
			ip, port := fmt.Sprintf("10.96.1.%d", i+1), svc.Spec.Ports[0].Port
			set(prefix+"_SERVICE_HOST", ip)
			set(prefix+"_SERVICE_PORT", strconv.Itoa(int(port)))
			set(prefix+"_PORT", fmt.Sprintf("tcp://%s:%d", ip, port))
		}
	}
	for _, e := range p.role.container.Env {
		switch {
		case e.ValueFrom == nil:
			set(e.Name, expand(e.Value, vars))
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := c.secrets[ref.Name][ref.Key]
			if !ok {
				t.Fatalf("%s: env %s: Secret %q has no key %q (CreateContainerConfigError)", p.hostname, e.Name, ref.Name, ref.Key)
			}
			set(e.Name, v)
		default:
			t.Fatalf("%s: env %s: this test resolves only values and secretKeyRef", p.hostname, e.Name)
		}
	}
	if p.index >= 0 {
		set("JOB_COMPLETION_INDEX", strconv.Itoa(p.index))
	}
	env := []string{"HOSTNAME=" + p.hostname}
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, vars
}

// expand substitutes $(VAR) as Kubernetes does in env values, command and
// args: a defined variable's value; $$ is $; anything else stays as it is.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			ref := s[i : i+3+end]
			if v, ok := vars[ref[2:len(ref)-1]]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(ref)
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// dial resolves host:port as a pod would reach it: a ClusterIP Service
// (kube-proxy to the targetPort of the one pod it selects) or a pod's
// <hostname>.<subdomain> (a headless Service that selects it).
func (c *cluster) dial(t *testing.T, from *pod, host string, port int) string {
	t.Helper()
	for _, svc := range c.d.services {
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		if host != svc.Name {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if int(sp.Port) != port {
				continue
			}
			for _, p := range c.pods {
				if !selects(svc, p.role.labels) {
					continue
				}
				cp, ok := p.role.containerPort(sp)
				if !ok {
					t.Fatalf("%s dials %s:%d: targetPort %s is not a port of %s", from.hostname, host, port, sp.TargetPort.String(), p.hostname)
				}
				return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ports[cp]))
			}
			t.Fatalf("%s dials %s:%d: the Service selects no pod", from.hostname, host, port)
		}
		t.Fatalf("%s dials %s:%d: the Service has no port %d", from.hostname, host, port, port)
	}
	for _, p := range c.pods {
		if p.role.pod.Subdomain == "" || host != p.hostname+"."+p.role.pod.Subdomain {
			continue
		}
		for _, svc := range c.d.services {
			if svc.Name == p.role.pod.Subdomain && svc.Spec.ClusterIP == corev1.ClusterIPNone && selects(svc, p.role.labels) {
				hp, ok := p.ports[int32(port)]
				if !ok {
					t.Fatalf("%s dials %s:%d: the pod has no container port %d", from.hostname, host, port, port)
				}
				return net.JoinHostPort("127.0.0.1", strconv.Itoa(hp))
			}
		}
		t.Fatalf("%s dials %s: no headless Service %q selects the pod: no DNS record", from.hostname, host, p.role.pod.Subdomain)
	}
	t.Fatalf("%s dials %s:%d: not a Service or a pod's DNS name", from.hostname, host, port)
	return ""
}

// hostPath maps a path in p's container to the host: a volume's claim
// directory, or the image's files.
func (c *cluster) hostPath(t *testing.T, p *pod, path string) string {
	t.Helper()
	if _, claim, ok := p.role.mountOf(path); ok {
		dir, ok := c.claims[claim]
		if !ok {
			dir = filepath.Join(c.root, "claims", claim)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			c.claims[claim] = dir
		}
		for _, m := range p.role.container.VolumeMounts {
			if rest, ok := strings.CutPrefix(path, m.MountPath); ok && (rest == "" || rest[0] == '/') {
				return dir + rest
			}
		}
	}
	for img, host := range c.paths {
		if rest, ok := strings.CutPrefix(path, img); ok && (rest == "" || rest[0] == '/') {
			return host + rest
		}
	}
	return path
}

// start starts p's container: the image's entrypoint (hjepa) with the
// pod's args, localized, and extra.
func (c *cluster) start(t *testing.T, bin string, p *pod, extra ...string) *proc {
	t.Helper()
	env, vars := c.environment(t, p)
	// MASTER_ADDR:MASTER_PORT is the coordinator's address.
	if host, ok := vars["MASTER_ADDR"]; ok {
		port, err := strconv.Atoi(vars["MASTER_PORT"])
		if err != nil {
			t.Fatalf("%s: MASTER_PORT=%q: %v", p.hostname, vars["MASTER_PORT"], err)
		}
		h, pt, _ := net.SplitHostPort(c.dial(t, p, host, port))
		for i, kv := range env {
			switch {
			case strings.HasPrefix(kv, "MASTER_ADDR="):
				env[i] = "MASTER_ADDR=" + h
			case strings.HasPrefix(kv, "MASTER_PORT="):
				env[i] = "MASTER_PORT=" + pt
			}
		}
	}
	if len(p.role.container.Command) > 0 {
		t.Fatalf("%s: a command replaces the image's entrypoint (hjepa): give args only", p.hostname)
	}
	var args []string
	for _, a := range p.role.container.Args {
		a = expand(a, vars)
		if strings.Contains(a, "$(") {
			t.Fatalf("%s: %q: an undefined variable, which Kubernetes leaves as it is", p.hostname, a)
		}
		name, val, isFlag := strings.Cut(a, "=")
		switch {
		case !isFlag:
		case name == "--listen" || name == "--metrics-listen":
			host, port := splitAddr(t, p, val)
			if host != "0.0.0.0" && host != "" && host != "::" {
				t.Fatalf("%s: %s=%s: a pod must listen on all its addresses", p.hostname, name, val)
			}
			hp, ok := p.ports[int32(port)]
			if !ok {
				t.Fatalf("%s: %s=%s: not a container port of the pod", p.hostname, name, val)
			}
			a = name + "=127.0.0.1:" + strconv.Itoa(hp)
		case name == "--advertise" || name == "--coordinator":
			host, port := splitAddr(t, p, val)
			a = name + "=" + c.dial(t, p, host, port)
		case name == "--device":
			a = "--device=cpu" // no GPU here
		default:
			a = name + "=" + c.hostPath(t, p, val)
		}
		args = append(args, a)
	}
	dir := filepath.Join(c.root, "pods", p.hostname)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return startProc(t, p.hostname, dir, bin, env, append(args, extra...))
}

func splitAddr(t *testing.T, p *pod, addr string) (string, int) {
	t.Helper()
	host, ps, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(ps)
	if err != nil || perr != nil {
		t.Fatalf("%s: address %q: want host:port", p.hostname, addr)
	}
	return host, port
}

func mustFlag(t *testing.T, r *role, name string) string {
	t.Helper()
	v, ok := r.args.one(name)
	if !ok {
		t.Fatalf("job %s: no --%s", r.job.Name, name)
	}
	return v
}

// buildHjepa builds the image's binary: static, CPU only (deploy/Dockerfile).
func buildHjepa(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "hjepa")
	build := exec.Command("go", "build", "-tags", "nocuda", "-o", bin, "../../cmd/hjepa")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a started container process and its output (stdout and stderr,
// as kubectl logs shows them).
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
	code int // the container's exit status: 128 + the signal when killed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

func startProc(t *testing.T, name, dir, bin string, env, args []string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), log: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd.Dir, p.cmd.Env, p.cmd.Stdout, p.cmd.Stderr = dir, env, p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait returns the exit status, failing the test after d.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within %v:\n%s", p.name, d, tail(p.log.String(), 3000))
		return -1
	}
}

func poll(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
