package collective

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hjepa-go/hjepa/collective/rpcsec"
)

// The multi-process tests re-execute this test binary once per rank, with
// rankRoleEnv saying what the rank does: "MODE RANK WORLD SIZE SEED". A rank
// prints "ADDR host:port", reads the ring's addresses ("a0 a1 ...") from
// stdin, joins and then, by mode:
//
//	sum:  all-reduces its rankData once and prints "DIGEST d";
//	loop: all-reduces forever, printing "ITER i" after each, and on an
//	      error prints "ERR message" and exits 1.
const rankRoleEnv = "HJEPA_COLLECTIVE_TEST_RANK"

func TestRankProcess(t *testing.T) {
	role := os.Getenv(rankRoleEnv)
	if role == "" {
		t.Skip("one rank of the multi-process tests; they run it")
	}
	os.Exit(rankProcess(role))
}

func rankProcess(role string) int {
	var mode string
	var rank, world, size int
	var seed uint64
	if _, err := fmt.Sscan(role, &mode, &rank, &world, &size, &seed); err != nil {
		fmt.Printf("ERR role %q: %v\n", role, err)
		return 2
	}
	e, err := Listen(EndpointOptions{Listen: "127.0.0.1:0", Security: rpcsec.Options{Token: os.Getenv(rpcsec.TokenEnv)}, Logger: testLogger()})
	if err != nil {
		fmt.Printf("ERR %v\n", err)
		return 1
	}
	defer e.Close()
	fmt.Printf("ADDR %s\n", e.Addr())
	sc := bufio.NewScanner(os.Stdin)
	if !sc.Scan() {
		fmt.Printf("ERR no peers on stdin\n")
		return 1
	}
	peers := strings.Fields(sc.Text())
	ctx := context.Background()
	r, err := e.Join(ctx, RingConfig{RunID: "multi-process", Generation: 1, Rank: rank, WorldSize: world,
		Next: peers[(rank+1)%world], Timeout: 10 * time.Minute})
	if err != nil {
		fmt.Printf("ERR %v\n", err)
		return 1
	}
	defer r.Close()
	data := rankData(seed, rank, size)
	switch mode {
	case "sum":
		if err := r.AllReduceSum(ctx, 0, 0, data); err != nil {
			fmt.Printf("ERR %v\n", err)
			return 1
		}
		if err := r.Barrier(ctx, 0); err != nil { // nobody closes while another still reads
			fmt.Printf("ERR %v\n", err)
			return 1
		}
		fmt.Printf("DIGEST %s\n", digest(data))
	case "loop":
		for step := int64(0); ; step++ {
			if err := r.AllReduceSum(ctx, step, 0, data); err != nil {
				fmt.Printf("ERR %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
				// Stay up like a worker reporting to its coordinator, so
				// the other ranks' errors are about the rank that died,
				// not about this one exiting.
				_, _ = io.Copy(io.Discard, os.Stdin)
				return 1
			}
			fmt.Printf("ITER %d\n", step)
		}
	}
	return 0
}

type rankChild struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr lockedBuffer
}

// lockedBuffer is a bytes.Buffer that exec's copying goroutine writes while
// the test reads it.
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

// next returns the child's next stdout line with the given prefix (other
// lines skipped), failing the test after d.
func (c *rankChild) next(t *testing.T, prefix string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	var skipped []string
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("rank process exited before printing %q; stdout: %q; stderr: %s", prefix, skipped, c.stderr.String())
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return strings.TrimSpace(rest)
			}
			skipped = append(skipped, l)
		case <-timeout:
			t.Fatalf("rank process printed no %q within %v", prefix, d)
		}
	}
}

// startRanks starts world rank processes and gives them each other's
// addresses.
func startRanks(t *testing.T, mode string, world, size int, seed uint64) []*rankChild {
	t.Helper()
	kids := make([]*rankChild, world)
	for rank := range kids {
		c := &rankChild{lines: make(chan string, 1024)}
		c.cmd = exec.Command(os.Args[0], "-test.run=^TestRankProcess$")
		c.cmd.Env = append(os.Environ(),
			fmt.Sprintf("%s=%s %d %d %d %d", rankRoleEnv, mode, rank, world, size, seed),
			rpcsec.TokenEnv+"="+testToken)
		c.cmd.Stderr = &c.stderr
		var err error
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		out, err := c.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(c.lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
		}()
		kids[rank] = c
		t.Cleanup(func() {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		})
	}
	addrs := make([]string, world)
	for rank, c := range kids {
		addrs[rank] = c.next(t, "ADDR ", time.Minute)
	}
	for _, c := range kids {
		if _, err := fmt.Fprintln(c.stdin, strings.Join(addrs, " ")); err != nil {
			t.Fatal(err)
		}
	}
	return kids
}

// TestMultiProcessAllReduce: three processes all-reduce; every rank gets the
// same bits, and the same as three in-process ranks given the same data.
func TestMultiProcessAllReduce(t *testing.T) {
	const world, size, seed = 3, 1000003, 11
	kids := startRanks(t, "sum", world, size, seed)
	digests := make([]string, world)
	for rank, c := range kids {
		digests[rank] = c.next(t, "DIGEST ", 2*time.Minute)
	}
	inputs := make([][]float32, world)
	for r := range inputs {
		inputs[r] = rankData(seed, r, size)
	}
	_, rings := newRing(t, world, ringOpts{})
	out := allReduceOnce(t, rings, 0, inputs)
	checkSum(t, out[0], inputs)
	want := digest(out[0])
	for rank, d := range digests {
		if d != want {
			t.Errorf("process rank %d: digest %s, in-process %s", rank, d, want)
		}
	}
}

// TestMultiProcessKill: rank 1's process is killed (SIGKILL) while the
// ranks loop over all-reduces; the other two fail, naming rank 1, long
// before their 10-minute timeout.
func TestMultiProcessKill(t *testing.T) {
	const world = 3
	kids := startRanks(t, "loop", world, 1<<20, 5)
	for _, c := range kids {
		c.next(t, "ITER ", 2*time.Minute)
	}
	if err := kids[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, rank := range []int{0, 2} {
		msg := kids[rank].next(t, "ERR ", time.Minute)
		if !strings.Contains(msg, "rank 1") {
			t.Errorf("rank %d: error %q does not name rank 1", rank, msg)
		}
	}
}
