package deploy

// Chaos against the compose deployment: seeded faults that a container
// platform produces (a worker's network cut with `docker network
// disconnect`, a frozen container with `docker pause`, a crashed worker
// process), temporary or permanent, against deploy/compose.yaml run as a
// user runs it (Docker restarts failed workers: restart on-failure). After
// each fault: no hang, a temporary fault's job completes with final
// parameters bitwise equal to an uninterrupted compose run, a permanent
// fault's job fails within the rendezvous deadline naming the missing rank,
// and every checkpoint on the output volume verifies.
//
// `make chaos` runs -compose-chaos-rounds rounds (CHAOS_COMPOSE_ROUNDS);
// `make test` runs one round of a network cut.

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hjepa-go/hjepa/train/checkpoint"
)

var (
	composeChaosRounds = flag.Int("compose-chaos-rounds", 1, "TestComposeChaos: number of rounds")
	composeChaosSeed   = flag.Uint64("compose-chaos-seed", 0, "TestComposeChaos: seed of the faults (0: from the clock); logged, pass it to replay")
	composeChaosKinds  = flag.String("compose-chaos-kinds", "", "TestComposeChaos: comma-separated kinds to draw from (default: net_cut for one round, all for more)")
)

// composeFaults are the faults of TestComposeChaos, one per round.
var composeFaults = []string{
	"net_cut",         // docker network disconnect a worker, connect it again 2-25 s later
	"net_cut_forever", // ... never again: the job fails at the rendezvous deadline naming the rank
	"pause_worker",    // docker pause a worker (the cgroup freezer: SIGSTOP for the whole container), unpause 2-25 s later
	"pause_forever",   // ... never: as net_cut_forever
	"kill_worker",     // SIGKILL the worker's process: Docker restarts it
}

const (
	// composeChaosSteps: a fault strikes within seconds of the first
	// checkpoint, well before the end (2000 steps take ~15 s on 2 cores).
	composeChaosSteps = 2000
	// composeRendezvous is the coordinator's --rendezvous-timeout here:
	// long enough for a worker reconnected after the longest cut (25 s) to
	// be restarted and register (its heartbeat gives up after 10 s), short
	// enough for a permanent fault's rounds.
	composeRendezvous = 75 * time.Second
	// composeHang bounds one compose job, faults and recovery included.
	composeHang = 5 * time.Minute
)

// TestComposeChaos runs -compose-chaos-rounds rounds of one fault each
// against deploy/compose.yaml (see the top of this file).
func TestComposeChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("compose chaos rounds run the compose deployment; skipped under -short")
	}
	compose := composeCommand(t)
	seed := *composeChaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	kinds := []string{"net_cut"}
	if *composeChaosKinds != "" {
		kinds = strings.Split(*composeChaosKinds, ",")
		for _, k := range kinds {
			if !slices.Contains(composeFaults, k) {
				t.Fatalf("-compose-chaos-kinds: unknown kind %q (kinds: %s)", k, strings.Join(composeFaults, ","))
			}
		}
	} else if *composeChaosRounds > 1 {
		kinds = composeFaults
	}
	t.Logf("compose chaos seed %d: replay with -compose-chaos-seed %d", seed, seed)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(*composeChaosRounds+1)*(composeHang+time.Minute))
	defer cancel()
	image := "hjepa-chaos-test:" + randomHex(t)
	buildImage(ctx, t, image)
	override := writeRendezvousOverride(t)

	start := time.Now()
	ref := newComposeJob(ctx, t, compose, image, override)
	ref.up()
	for _, s := range []string{"coordinator", "worker0", "worker1"} {
		if code := ref.wait(s); code != 0 {
			ref.dumpLogs()
			t.Fatalf("reference run: %s exited %d", s, code)
		}
	}
	refModel := ref.model()
	ref.down()
	t.Logf("reference run: %.1fs", time.Since(start).Seconds())

	st := &composeChaosStats{byKind: map[string]int{}}
	for r := range *composeChaosRounds {
		begin := time.Now()
		rng := rand.New(rand.NewPCG(seed, uint64(r)))
		composeChaosRound(ctx, t, compose, image, override, r, rng, kinds, st, refModel)
		t.Logf("round %d: %.1fs", r, time.Since(begin).Seconds())
	}
	fmt.Println(st)
	t.Log(st)
}

type composeChaosStats struct {
	faults, hangs, lost, completed, equal, failedClearly, missed int
	byKind                                                       map[string]int
}

func (s *composeChaosStats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "COMPOSE-CHAOS faults=%d", s.faults)
	for _, k := range composeFaults {
		fmt.Fprintf(&b, " %s=%d", k, s.byKind[k])
	}
	fmt.Fprintf(&b, " missed=%d hangs=%d lost_checkpoints=%d failed_clearly=%d bitwise_equal=%d/%d",
		s.missed, s.hangs, s.lost, s.failedClearly, s.equal, s.completed)
	return b.String()
}

func composeChaosRound(ctx context.Context, t *testing.T, compose []string, image, override string, round int, rng *rand.Rand, kinds []string, st *composeChaosStats, refModel []checkpoint.Tensor) {
	kind := kinds[rng.IntN(len(kinds))]
	worker := fmt.Sprintf("worker%d", rng.IntN(2))
	delay := time.Duration(rng.IntN(3000)) * time.Millisecond
	heal := time.Duration(2000+rng.IntN(23000)) * time.Millisecond
	permanent := strings.HasSuffix(kind, "_forever")
	desc := fmt.Sprintf("round %d: %s of %s, %v after the first checkpoint", round, kind, worker, delay)
	if !permanent && kind != "kill_worker" {
		desc += fmt.Sprintf(", healed after %v", heal)
	}
	t.Log(desc)

	j := newComposeJob(ctx, t, compose, image, override)
	defer j.down()
	j.up()
	target := j.container(worker)
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(j.logs("worker0"), "\tcheckpoint\t") {
		if time.Now().After(deadline) {
			j.dumpLogs()
			t.Fatalf("%s: rank 0 wrote no checkpoint within 2 minutes", desc)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(delay)
	if j.exited("coordinator") {
		st.missed++
		t.Errorf("%s: the job ended before the fault could strike", desc)
		return
	}
	st.faults++
	st.byKind[kind]++
	network := j.project + "_default"
	var heals *time.Timer
	switch kind {
	case "net_cut", "net_cut_forever":
		dockerOut(t, "network", "disconnect", network, target)
		if !permanent {
			heals = time.AfterFunc(heal, func() { reconnect(t, network, target, worker) })
		}
	case "pause_worker", "pause_forever":
		dockerOut(t, "pause", target)
		if !permanent {
			heals = time.AfterFunc(heal, func() { _ = exec.Command("docker", "unpause", target).Run() })
		}
	case "kill_worker":
		pid, err := strconv.Atoi(strings.TrimSpace(dockerOut(t, "inspect", "-f", "{{.State.Pid}}", target)))
		if err != nil || pid <= 0 {
			t.Fatalf("%s: %s's pid: %v (%d)", desc, worker, err, pid)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("%s: SIGKILL %s (pid %d): %v", desc, worker, pid, err)
		}
	}
	if heals != nil {
		defer heals.Stop()
	}

	// The coordinator's exit ends the job either way; a frozen or cut-off
	// worker may then stay (paused, or retrying a coordinator that is
	// gone): `compose down` removes it.
	code := j.wait("coordinator")
	if code < 0 {
		st.hangs++
		j.dumpLogs()
		t.Errorf("HANG: %s: the coordinator did not exit within %v", desc, composeHang)
		return
	}
	logs := j.logs("coordinator")
	generations := 0
	for _, m := range generationRE.FindAllStringSubmatch(logs, -1) {
		n, _ := strconv.Atoi(m[1])
		generations = max(generations, n)
	}
	t.Logf("%s: coordinator exited %d after %d generation(s)", desc, code, generations)
	if permanent {
		want := "missing rank " + strings.TrimPrefix(worker, "worker")
		if code == 0 || !strings.Contains(logs, "rendezvous timed out") || !strings.Contains(logs, want) {
			j.dumpLogs()
			t.Errorf("%s: coordinator exited %d; want a failure saying the rendezvous timed out, %q", desc, code, want)
		} else {
			st.failedClearly++
		}
		st.lost += j.verifyCheckpoints(desc)
		return
	}
	if code != 0 {
		j.dumpLogs()
		t.Errorf("%s: coordinator exited %d, want 0 after a temporary fault", desc, code)
		st.lost += j.verifyCheckpoints(desc)
		return
	}
	for _, s := range []string{"worker0", "worker1"} {
		if c := j.wait(s); c != 0 {
			j.dumpLogs()
			t.Errorf("%s: %s exited %d, want 0", desc, s, c)
		}
	}
	st.lost += j.verifyCheckpoints(desc)
	st.completed++
	model := j.model()
	if equalModels(model, refModel) {
		st.equal++
	} else {
		t.Errorf("%s: final parameters differ from the uninterrupted run's", desc)
	}
}

// generationRE finds the coordinator's log lines of a generation formed.
var generationRE = regexp.MustCompile(`"generation": (\d+), "world_size"`)

// reconnect puts container back on network under its service name,
// retrying while Docker is restarting it.
func reconnect(t *testing.T, network, container, service string) {
	var out []byte
	var err error
	for range 120 {
		out, err = exec.Command("docker", "network", "connect", "--alias", service, network, container).CombinedOutput()
		if err == nil || strings.Contains(string(out), "already exists") {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("docker network connect %s %s: %v: %s", network, container, err, out)
}

// writeRendezvousOverride writes a compose override that gives the
// coordinator of compose.yaml --rendezvous-timeout composeRendezvous (the
// default, 10 min, is right for real clusters and too long here).
func writeRendezvousOverride(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	cmd := file.Services["coordinator"].Command
	if len(cmd) == 0 {
		t.Fatal("compose.yaml: services.coordinator.command is empty")
	}
	cmd = append(cmd, "--rendezvous-timeout", composeRendezvous.String())
	out, err := yaml.Marshal(map[string]any{"services": map[string]any{"coordinator": map[string]any{"command": cmd}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rendezvous.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// composeJob is one compose project of compose.yaml (and an override).
type composeJob struct {
	ctx      context.Context
	t        *testing.T
	compose  []string
	project  string
	override string
	env      []string
	ids      map[string]string
}

func newComposeJob(ctx context.Context, t *testing.T, compose []string, image, override string) *composeJob {
	return &composeJob{ctx: ctx, t: t, compose: compose, project: "hjepachaos" + randomHex(t), override: override,
		env: append(os.Environ(), "HJEPA_IMAGE="+image, "HJEPA_JOB_TOKEN="+randomHex(t),
			"HJEPA_CONFIG=synthetic-test.yaml", "HJEPA_STEPS="+strconv.Itoa(composeChaosSteps)),
		ids: map[string]string{}}
}

func (j *composeJob) run(ctx context.Context, args ...string) (string, error) {
	args = append(append(append([]string{}, j.compose[1:]...), "-p", j.project, "-f", "compose.yaml", "-f", j.override), args...)
	cmd := exec.CommandContext(ctx, j.compose[0], args...)
	cmd.Env = j.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (j *composeJob) up() {
	j.t.Helper()
	if out, err := j.run(j.ctx, "up", "-d"); err != nil {
		j.t.Fatalf("compose up: %v\n%s", err, out)
	}
}

// down removes the project's containers, network and volume.
func (j *composeJob) down() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, id := range j.ids { // a paused container would hold `down` up
		_ = exec.Command("docker", "unpause", id).Run()
	}
	if out, err := j.run(ctx, "down", "-v", "--timeout", "2"); err != nil {
		j.t.Logf("compose down: %v\n%s", err, out)
	}
}

// container is service's container id.
func (j *composeJob) container(service string) string {
	j.t.Helper()
	if id := j.ids[service]; id != "" {
		return id
	}
	out, err := j.run(j.ctx, "ps", "-q", service)
	if err != nil || strings.TrimSpace(out) == "" {
		j.t.Fatalf("compose ps -q %s: %v\n%s", service, err, out)
	}
	j.ids[service] = strings.TrimSpace(out)
	return j.ids[service]
}

func (j *composeJob) logs(service string) string {
	out, _ := exec.Command("docker", "logs", j.container(service)).CombinedOutput()
	return string(out)
}

func (j *composeJob) exited(service string) bool {
	return strings.TrimSpace(dockerOut(j.t, "inspect", "-f", "{{.State.Status}}", j.container(service))) == "exited"
}

// wait waits for service's container to exit for good and returns its
// status, -1 after composeHang. A worker Docker is about to restart is not
// done (`docker wait` would return the status of the run that failed).
func (j *composeJob) wait(service string) int {
	id := j.container(service)
	deadline := time.Now().Add(composeHang)
	for time.Now().Before(deadline) {
		out, err := exec.Command("docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id).Output()
		if err != nil {
			j.t.Fatalf("docker inspect %s: %v", service, err)
		}
		status, code, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
		if status == "exited" {
			time.Sleep(300 * time.Millisecond) // Docker may be about to restart it
			again, _ := exec.Command("docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id).Output()
			if strings.TrimSpace(string(again)) == strings.TrimSpace(string(out)) {
				n, _ := strconv.Atoi(code)
				return n
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return -1
}

func (j *composeJob) dumpLogs() {
	for _, s := range []string{"coordinator", "worker0", "worker1"} {
		out, _ := exec.Command("docker", "logs", "--tail", "30", j.container(s)).CombinedOutput()
		j.t.Logf("%s's last log lines:\n%s", s, out)
	}
}

// copyOut copies the job's output volume (through the coordinator's
// container, which mounts it) to a temporary directory.
func (j *composeJob) copyOut() string {
	j.t.Helper()
	dir := j.t.TempDir()
	if out, err := exec.Command("docker", "cp", j.container("coordinator")+":/out/checkpoints", dir).CombinedOutput(); err != nil {
		j.t.Fatalf("docker cp the output volume: %v\n%s", err, out)
	}
	return filepath.Join(dir, "checkpoints")
}

// verifyCheckpoints checks every checkpoint on the output volume and
// returns how many fail.
func (j *composeJob) verifyCheckpoints(desc string) int {
	j.t.Helper()
	m := &checkpoint.Manager{Dir: j.copyOut(), ReadOnly: true}
	entries, err := m.List()
	if err != nil {
		j.t.Errorf("%s: %v", desc, err)
		return 1
	}
	bad := 0
	for _, e := range entries {
		if err := checkpoint.Verify(e.Path); err != nil {
			bad++
			j.t.Errorf("LOST CHECKPOINT: %s: %v", desc, err)
		}
	}
	return bad
}

func (j *composeJob) model() []checkpoint.Tensor {
	j.t.Helper()
	ck, err := checkpoint.Read(filepath.Join(j.copyOut(), checkpoint.LatestName))
	if err != nil {
		j.t.Fatal(err)
	}
	return ck.Model
}

func equalModels(a, b []checkpoint.Tensor) bool {
	if len(a) != len(b) {
		return false
	}
	byName := map[string][]float32{}
	for _, x := range b {
		byName[x.Name] = x.Data
	}
	for _, x := range a {
		y, ok := byName[x.Name]
		if !ok || len(y) != len(x.Data) {
			return false
		}
		for i := range y {
			if math.Float32bits(x.Data[i]) != math.Float32bits(y[i]) {
				return false
			}
		}
	}
	return true
}
