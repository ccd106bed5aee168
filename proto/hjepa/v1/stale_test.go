package hjepav1

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsFresh fails when a .proto file or the buf
// configuration changed after the Go code was generated: run `make proto`.
func TestGeneratedCodeIsFresh(t *testing.T) {
	f, err := os.Open("proto.sha256")
	if err != nil {
		t.Fatalf("%v: run `make proto`", err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("proto.sha256: malformed line %q: run `make proto`", sc.Text())
		}
		data, err := os.ReadFile(filepath.Join("..", "..", name))
		if err != nil {
			t.Fatalf("%v: run `make proto`", err)
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s changed since the Go code was generated: run `make proto` and commit the result", name)
		}
		seen[name] = true
	}
	protos, _ := filepath.Glob("*.proto")
	for _, p := range protos {
		if !seen["hjepa/v1/"+p] {
			t.Errorf("hjepa/v1/%s has no generated code recorded: run `make proto`", p)
		}
	}
}
