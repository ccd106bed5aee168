package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigMigratePyTorch: `hjepa config validate` passes the PyTorch
// H-JEPA default.yaml with notes only, and `hjepa config migrate` turns it
// into a file that validates with none, to the same digest.
func TestConfigMigratePyTorch(t *testing.T) {
	fixture, err := filepath.Abs(filepath.Join("..", "..", "config", "testdata", "pytorch-hjepa-default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	v := hjepa(t, dir, "config", "validate", "--config", fixture)
	if v.code != 0 || !strings.HasPrefix(v.stdout, "ok: ") {
		t.Fatalf("validate of the PyTorch file:\n%s", v)
	}
	for _, want := range []string{"note: ", "data.pin_memory: ignored", "logging.wandb: ignored", "training.use_amp: ignored"} {
		if !strings.Contains(v.stderr, want) {
			t.Errorf("validate's notes lack %q:\n%s", want, v)
		}
	}
	if strings.Contains(v.stderr, "distributed.enabled") {
		t.Errorf("a note points at distributed.enabled:\n%s", v)
	}

	m := hjepa(t, dir, "config", "migrate", fixture)
	if m.code != 0 || m.stderr != "" {
		t.Fatalf("migrate:\n%s", m)
	}
	migrated := filepath.Join(dir, "migrated.yaml")
	if err := os.WriteFile(migrated, []byte(m.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	mv := hjepa(t, dir, "config", "validate", "--config", migrated)
	if mv.code != 0 || mv.stderr != "" {
		t.Fatalf("validate of the migrated file (want no notes):\n%s", mv)
	}
	if mv.stdout != v.stdout { // the "ok" line ends with the digest
		t.Fatalf("migrated file validates to %q, the PyTorch file to %q", mv.stdout, v.stdout)
	}

	// A key hjepa cannot honour stops both, with the reason.
	rope := filepath.Join(dir, "rope.yaml")
	if err := os.WriteFile(rope, []byte("model:\n  rope:\n    use_rope: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"config", "validate", "--config", rope}, {"config", "migrate", rope}} {
		r := hjepa(t, dir, args...)
		if r.code == 0 || !strings.Contains(r.stderr, "model.rope.use_rope") || !strings.Contains(r.stderr, "RoPE is not implemented") {
			t.Errorf("%v:\n%s", args, r)
		}
	}
}
