package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hjepa-go/hjepa/collective"
	"github.com/hjepa-go/hjepa/collective/rpcsec"
)

// allreduce_busbw_w<N>_<size>: ring all-reduce of one float32 buffer over N
// processes on 127.0.0.1, as bus bandwidth in GB/s,
//
//	busbw = 2(N-1)/N * bytes / seconds
//
// (the bytes each link carries; NCCL's definition). Ours is package
// collective: this binary re-executes itself N times with the hidden first
// argument -allreduce-rank=RANK,WORLD,SIZES, each a rank; rank 0 reports.
// The baseline is torch.distributed's gloo backend (bench/torch_allreduce.py,
// N processes, init tcp://127.0.0.1:PORT). Both sides time each iteration on
// rank 0 between a barrier and the end of the all-reduce and report the
// median of the timed iterations after the same warm-up; the two sides run
// allreduceRounds alternating rounds and each keeps its best median.
//
// HJEPA_BENCH_RANK_PROFILE=DIR makes each of our rank processes write a CPU
// profile to DIR/allreduce_w<N>_rank<R>.pprof.

type allreduceSize struct {
	name          string
	bytes         int
	warmup, iters int
}

var (
	allreduceWorlds = []int{2, 4}
	allreduceSizes  = []allreduceSize{
		{"1MiB", 1 << 20, 5, 25},
		{"25MiB", 25 << 20, 2, 9},
		{"100MiB", 100 << 20, 1, 5},
	}
)

const allreduceRankFlag = "-allreduce-rank="

func init() {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], allreduceRankFlag) {
		// Not on this goroutine: during init it is locked to the main
		// thread, and a locked goroutine that blocks costs two thread
		// switches each time (stoplockedm/startlockedm), which a worker's
		// collective does not pay.
		done := make(chan error)
		go func() { done <- allreduceRank(strings.TrimPrefix(os.Args[1], allreduceRankFlag)) }()
		if err := <-done; err != nil {
			fmt.Fprintf(os.Stderr, "allreduce rank: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	var names []string
	for _, w := range allreduceWorlds {
		for _, s := range allreduceSizes {
			names = append(names, allreduceName(w, s))
		}
	}
	register(Bench{Names: names, Run: runAllReduce})
}

func allreduceName(world int, s allreduceSize) string {
	return fmt.Sprintf("allreduce_busbw_w%d_%s", world, s.name)
}

func busBW(world, bytes int, seconds float64) float64 {
	return 2 * float64(world-1) / float64(world) * float64(bytes) / seconds / 1e9
}

// allreduceResult is one size's timing, as both sides print it (JSON).
type allreduceResult struct {
	Bytes   int     `json:"bytes"`
	MedianS float64 `json:"median_s"`
	MinS    float64 `json:"min_s"`
	Iters   int     `json:"iters"`
	// CPUS is rank 0's CPU time (user+system, all threads) in the median
	// timed iteration: the cost of an all-reduce, whatever else the machine
	// is doing.
	CPUS float64 `json:"cpu_s"`
	// Switches is rank 0's context switches (voluntary and not, all
	// threads) in the median timed iteration: hand-offs between threads
	// cost most when the ranks outnumber the cores.
	Switches float64 `json:"ctx_switches"`
}

func runAllReduce(want func(string) bool, report func(Result)) error {
	for _, world := range allreduceWorlds {
		var sel []int
		for i, s := range allreduceSizes {
			if want(allreduceName(world, s)) {
				sel = append(sel, i)
			}
		}
		if len(sel) == 0 {
			continue
		}
		// Rounds alternate ours and Gloo's; each side keeps its best
		// median, so a burst of other load on the machine during one side's
		// round does not decide the ratio.
		ours, base := map[int]allreduceResult{}, map[int]allreduceResult{}
		for range allreduceRounds {
			o, err := runOurAllReduce(world, sel)
			if err != nil {
				return fmt.Errorf("ours, %d ranks: %w", world, err)
			}
			b, err := runGlooAllReduce(world, sel)
			if err != nil {
				return fmt.Errorf("gloo, %d ranks: %w", world, err)
			}
			keepBest(ours, o)
			keepBest(base, b)
		}
		for _, i := range sel {
			s := allreduceSizes[i]
			o, b := ours[s.bytes], base[s.bytes]
			if o.MedianS <= 0 || b.MedianS <= 0 {
				return fmt.Errorf("%s: missing result (ours %+v, gloo %+v)", allreduceName(world, s), o, b)
			}
			fmt.Fprintf(os.Stderr, "%s: ours median %.2f ms (min %.2f, rank 0 CPU %.1f ms, %.0f context switches), gloo median %.2f ms (min %.2f, rank 0 CPU %.1f ms, %.0f context switches)\n",
				allreduceName(world, s), 1e3*o.MedianS, 1e3*o.MinS, 1e3*o.CPUS, o.Switches, 1e3*b.MedianS, 1e3*b.MinS, 1e3*b.CPUS, b.Switches)
			report(Result{Name: allreduceName(world, s), Value: busBW(world, s.bytes, o.MedianS), Unit: "GB/s",
				Baseline: busBW(world, s.bytes, b.MedianS)})
		}
	}
	return nil
}

// allreduceRounds is how many times each side runs every size.
const allreduceRounds = 3

// keepBest keeps, per size, the result with the lowest median.
func keepBest(best, got map[int]allreduceResult) {
	for k, r := range got {
		if b, ok := best[k]; !ok || r.MedianS < b.MedianS {
			best[k] = r
		}
	}
}

// runOurAllReduce starts world rank processes and returns rank 0's results
// by buffer size.
func runOurAllReduce(world int, sel []int) (map[int]allreduceResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	token, err := rpcsec.NewToken()
	if err != nil {
		return nil, err
	}
	sizes := make([]string, len(sel))
	for i, s := range sel {
		sizes[i] = strconv.Itoa(s)
	}
	type rank struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		out    *bufio.Scanner
		stderr bytes.Buffer
	}
	ranks := make([]*rank, world)
	defer func() {
		for _, r := range ranks {
			if r != nil && r.cmd.Process != nil {
				_ = r.cmd.Process.Kill()
				_ = r.cmd.Wait()
			}
		}
	}()
	addrs := make([]string, world)
	for i := range ranks {
		r := &rank{cmd: exec.Command(exe, fmt.Sprintf("%s%d,%d,%s", allreduceRankFlag, i, world, strings.Join(sizes, "+")))}
		r.cmd.Env = append(os.Environ(), rpcsec.TokenEnv+"="+token)
		r.cmd.Stderr = &r.stderr
		if r.stdin, err = r.cmd.StdinPipe(); err != nil {
			return nil, err
		}
		stdout, err := r.cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		r.out = bufio.NewScanner(stdout)
		if err := r.cmd.Start(); err != nil {
			return nil, err
		}
		ranks[i] = r
		if !r.out.Scan() || !strings.HasPrefix(r.out.Text(), "ADDR ") {
			_ = r.cmd.Wait()
			return nil, fmt.Errorf("rank %d printed no address: %s", i, r.stderr.String())
		}
		addrs[i] = strings.TrimPrefix(r.out.Text(), "ADDR ")
	}
	for _, r := range ranks {
		if _, err := fmt.Fprintln(r.stdin, strings.Join(addrs, " ")); err != nil {
			return nil, err
		}
	}
	results := map[int]allreduceResult{}
	for ranks[0].out.Scan() {
		var res allreduceResult
		if line, ok := strings.CutPrefix(ranks[0].out.Text(), "RESULT "); ok {
			if err := json.Unmarshal([]byte(line), &res); err != nil {
				return nil, fmt.Errorf("rank 0: %q: %w", line, err)
			}
			results[res.Bytes] = res
		}
	}
	for i, r := range ranks {
		if err := r.cmd.Wait(); err != nil {
			return nil, fmt.Errorf("rank %d: %v: %s", i, err, bytes.TrimSpace(r.stderr.Bytes()))
		}
		r.cmd.Process = nil
	}
	return results, nil
}

// allreduceRank is one of our rank processes: spec is "RANK,WORLD,I+J+..."
// (indices into allreduceSizes).
func allreduceRank(spec string) error {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		return fmt.Errorf("bad spec %q", spec)
	}
	rank, err1 := strconv.Atoi(parts[0])
	world, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("bad spec %q", spec)
	}
	var sizes []allreduceSize
	for _, f := range strings.Split(parts[2], "+") {
		i, err := strconv.Atoi(f)
		if err != nil || i < 0 || i >= len(allreduceSizes) {
			return fmt.Errorf("bad size index %q", f)
		}
		sizes = append(sizes, allreduceSizes[i])
	}
	if dir := os.Getenv("HJEPA_BENCH_RANK_PROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("allreduce_w%d_rank%d.pprof", world, rank)))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	e, err := collective.Listen(collective.EndpointOptions{Listen: "127.0.0.1:0", Security: rpcsec.Options{Token: os.Getenv(rpcsec.TokenEnv)}})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Printf("ADDR %s\n", e.Addr())
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return fmt.Errorf("no peer addresses on stdin")
	}
	addrs := strings.Fields(in.Text())
	ctx := context.Background()
	ring, err := e.Join(ctx, collective.RingConfig{RunID: "bench-allreduce", Generation: 1, Rank: rank, WorldSize: world,
		Next: addrs[(rank+1)%world], Timeout: 10 * time.Minute})
	if err != nil {
		return err
	}
	defer ring.Close()
	step := int64(0)
	for _, s := range sizes {
		data := make([]float32, s.bytes/4)
		var times, cpus, switches []float64
		for it := range s.warmup + s.iters {
			for i := range data {
				data[i] = 1e-3
			}
			step++
			if err := ring.Barrier(ctx, step); err != nil {
				return err
			}
			t0, c0, w0 := time.Now(), cpuSeconds(), contextSwitches()
			if err := ring.AllReduceSum(ctx, step, 0, data); err != nil {
				return err
			}
			if it >= s.warmup {
				times = append(times, time.Since(t0).Seconds())
				cpus = append(cpus, cpuSeconds()-c0)
				switches = append(switches, contextSwitches()-w0)
			}
		}
		if rank == 0 {
			slices.Sort(times)
			slices.Sort(cpus)
			slices.Sort(switches)
			line, _ := json.Marshal(allreduceResult{Bytes: s.bytes, MedianS: median(times), MinS: times[0], Iters: len(times),
				CPUS: median(cpus), Switches: median(switches)})
			fmt.Printf("RESULT %s\n", line)
		}
	}
	return ring.Barrier(ctx, step+1) // nobody closes while another still reads
}

// cpuSeconds is this process's CPU time so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// contextSwitches is this process's context switches so far.
func contextSwitches() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Nvcsw + ru.Nivcsw)
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// runGlooAllReduce runs bench/torch_allreduce.py with the same sizes and
// iteration counts and returns its results by buffer size.
func runGlooAllReduce(world int, sel []int) (map[int]allreduceResult, error) {
	script, err := benchRepoFile("bench/torch_allreduce.py")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	var plan []string
	for _, i := range sel {
		s := allreduceSizes[i]
		plan = append(plan, fmt.Sprintf("%d:%d:%d", s.bytes, s.warmup, s.iters))
	}
	cmd := exec.Command("/usr/bin/python3", script, "--world", strconv.Itoa(world), "--port", strconv.Itoa(port),
		"--plan", strings.Join(plan, ","))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v: %s (PyTorch 1.13 CPU comes from Debian's python3-torch: make bench-deps)",
			cmd, err, bytes.TrimSpace(stderr.Bytes()))
	}
	results := map[int]allreduceResult{}
	for _, l := range strings.Split(string(out), "\n") {
		line, ok := strings.CutPrefix(l, "RESULT ")
		if !ok {
			continue
		}
		var res allreduceResult
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", cmd, line, err)
		}
		results[res.Bytes] = res
	}
	return results, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
