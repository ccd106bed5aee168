package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hjepa-go/hjepa/train/checkpoint"
)

// badEnv is one bad-input case's world: a temp dir holding a copy of a good
// run (run/, with checkpoints latest, best and step_5) and the fixtures the
// case writes.
type badEnv struct {
	t   *testing.T
	dir string
	run string
	// protect lists the directories that must be byte-identical after the
	// command; run/checkpoints always is.
	protect []string
	// asNobody runs the command as uid/gid 65534 when the test runs as root
	// (so that chmod 000 means unreadable).
	asNobody bool
	// cmd is the started command, for during hooks.
	cmd *exec.Cmd
}

// path joins elems under the case's dir.
func (e *badEnv) path(elem ...string) string {
	return filepath.Join(append([]string{e.dir}, elem...)...)
}

// write creates a file (and its directories) under the case's dir.
func (e *badEnv) write(name string, b []byte) string {
	e.t.Helper()
	p := e.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// train is `hjepa train` on synthetic-test.yaml into run/ with sets.
func (e *badEnv) train(sets ...string) []string {
	return trainArgs(e.run, append([]string{"training.max_steps=10", "threads=1"}, sets...)...)
}

// resume is train plus --resume.
func (e *badEnv) resume(sets ...string) []string { return append(e.train(sets...), "--resume") }

// onlyLatest removes every checkpoint of run/ but checkpoint_latest, so that
// --resume has nothing intact to fall back to, and returns latest's path.
func (e *badEnv) onlyLatest() string {
	e.t.Helper()
	ck := filepath.Join(e.run, "checkpoints")
	ents, err := os.ReadDir(ck)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, d := range ents {
		if d.Name() != checkpoint.LatestName {
			if err := os.RemoveAll(filepath.Join(ck, d.Name())); err != nil {
				e.t.Fatal(err)
			}
		}
	}
	return filepath.Join(ck, checkpoint.LatestName)
}

// tmpfs mounts a tmpfs of size bytes under the case's dir and unmounts it at
// cleanup. Only root can.
func (e *badEnv) tmpfs(size int) string {
	e.t.Helper()
	mnt := e.path("tmpfs")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		e.t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", mnt).CombinedOutput(); err != nil {
		e.t.Skipf("cannot mount a tmpfs (%v: %s); skipping the full-disk case", err, bytes.TrimSpace(out))
	}
	e.t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			e.t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// badInput is one case: a command that must fail with exit status 1, name
// the offending key or file (want: every substring in stderr) and say what
// to do (hint: at least one substring in stderr), without a panic, and
// leave the protected checkpoint directories byte-identical.
type badInput struct {
	name string
	// args writes the case's fixtures and returns the command line.
	args func(e *badEnv) []string
	want []string
	hint []string
	env  []string
	// root marks cases that need root (tmpfs); they are skipped otherwise.
	root bool
	// during runs while the command runs (after it started).
	during func(e *badEnv)
}

// dataSets point the run at a dataset instead of the synthetic one.
func dataSets(dataset, path string, extra ...string) []string {
	return append([]string{"data.dataset=" + dataset, "data.path=" + path}, extra...)
}

// idxImages encodes n 16x16 images; pixel k of image i is (i*31+k*7)%256.
func idxImages(magic uint32, n int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{magic, uint32(n), 16, 16})
	for i := range n {
		for k := range 16 * 16 {
			b.WriteByte(byte((i*31 + k*7) % 256))
		}
	}
	return b.Bytes()
}

func idxLabels(n int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, []uint32{0x00000801, uint32(n)})
	for i := range n {
		b.WriteByte(byte(i % 10))
	}
	return b.Bytes()
}

// writeIDX writes an MNIST-layout directory of 64 training and 32 test
// 16x16 images under name and returns it; edit may replace files.
func (e *badEnv) writeIDX(name string) string {
	for _, s := range []struct {
		prefix string
		n      int
	}{{"train", 64}, {"t10k", 32}} {
		e.write(filepath.Join(name, s.prefix+"-images-idx3-ubyte"), idxImages(0x00000803, s.n))
		e.write(filepath.Join(name, s.prefix+"-labels-idx1-ubyte"), idxLabels(s.n))
	}
	return e.path(name)
}

// writeCIFAR10 writes name/{data_batch_1..5,test_batch}.bin of 4 zero
// records each and returns the directory.
func (e *badEnv) writeCIFAR10(name string) string {
	for i := 1; i <= 5; i++ {
		e.write(filepath.Join(name, fmt.Sprintf("data_batch_%d.bin", i)), make([]byte, 3073*4))
	}
	e.write(filepath.Join(name, "test_batch.bin"), make([]byte, 3073*4))
	return e.path(name)
}

func jpegFile(t *testing.T, seed int) []byte {
	t.Helper()
	m := image.NewGray(image.Rect(0, 0, 16, 16))
	for y := range 16 {
		for x := range 16 {
			m.SetGray(x, y, color.Gray{uint8((x*16 + y*5 + seed*37) % 256)})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeImageFolder writes name/{train,val}/{a,b}/NN.jpg, 16 training images
// per class (so a 10-step run reads every one) and 4 validation images.
func (e *badEnv) writeImageFolder(name string) string {
	for _, split := range []struct {
		name string
		n    int
	}{{"train", 16}, {"val", 4}} {
		for ci, class := range []string{"a", "b"} {
			for i := range split.n {
				e.write(filepath.Join(name, split.name, class, fmt.Sprintf("%02d.jpg", i)), jpegFile(e.t, ci*100+i))
			}
		}
	}
	return e.path(name)
}

// dirDigest maps every file under dir (relative path) to a hash of its
// bytes; directories map to "dir".
func dirDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatalf("digest %s: %v", dir, err)
	}
	return out
}

func diffDigests(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		switch w, ok := after[k]; {
		case !ok:
			d = append(d, "removed "+k)
		case w != v:
			d = append(d, "changed "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	sort.Strings(d)
	return d
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

var (
	goodRunOnce sync.Once
	goodRunDir  string
	goodRunErr  error
)

// goodRun trains 10 steps once per test process (checkpoints latest, best
// and step_5) for the cases to copy.
func goodRun(t *testing.T) string {
	goodRunOnce.Do(func() {
		// Beside the binary: TestMain removes both.
		dir := filepath.Dir(hjepaBin)
		goodRunDir = filepath.Join(dir, "goodrun")
		r := hjepa(t, dir, trainArgs(goodRunDir, "training.max_steps=10", "checkpoint.every_steps=5", "threads=1")...)
		if r.code != 0 {
			goodRunErr = fmt.Errorf("good run: %s", r)
		}
	})
	if goodRunErr != nil {
		t.Fatal(goodRunErr)
	}
	return goodRunDir
}

// fillDisk writes to dir/filler until the filesystem is full.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	for _, n := range []int{4096, 512, 1} { // the last partial blocks
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

func badInputCases() []badInput {
	mismatch := []string{"different model config", "model.safetensors"}
	return []badInput{
		// Configuration files and keys.
		{
			name: "config_file_missing",
			args: func(e *badEnv) []string {
				return []string{"config", "validate", "--config", e.path("nope.yaml")}
			},
			want: []string{"nope.yaml", "no such file"},
			hint: []string{"check the --config path"},
		},
		{
			name: "config_file_unreadable",
			args: func(e *badEnv) []string {
				p := e.write("secret.yaml", []byte("training:\n  lr: 1.0e-3\n"))
				if err := os.Chmod(p, 0); err != nil {
					e.t.Fatal(err)
				}
				e.asNobody = true
				return []string{"train", "--config", p, "--out", e.run}
			},
			want: []string{"secret.yaml", "permission denied"},
			hint: []string{"--config", "chmod", "readable"},
		},
		{
			name: "config_yaml_syntax_error",
			args: func(e *badEnv) []string {
				p := e.write("broken.yaml", []byte("model:\n  embed_dim: [32\n  depth: 2\n"))
				return []string{"train", "--config", p, "--out", e.run}
			},
			want: []string{"broken.yaml", "yaml"},
			hint: []string{"fix the YAML syntax"},
		},
		{
			name: "config_unknown_key_in_file",
			args: func(e *badEnv) []string {
				p := e.write("typo.yaml", []byte("model:\n  embed_dimm: 32\n"))
				return []string{"config", "validate", "--config", p}
			},
			want: []string{"typo.yaml:2", "model.embed_dimm", "unknown key"},
			hint: []string{`did you mean "model.embed_dim"`},
		},
		{
			name: "set_unknown_key",
			args: func(e *badEnv) []string { return e.train("training.lrr=1e-3") },
			want: []string{"--set", "training.lrr", "unknown key"},
			hint: []string{`did you mean "training.lr"`},
		},
		{
			name: "set_not_key_value",
			args: func(e *badEnv) []string { return e.train("training.lr") },
			want: []string{"training.lr", "not key=value"},
			hint: []string{"--set training.lr="},
		},
		{
			name: "set_wrong_type",
			args: func(e *badEnv) []string { return e.train("data.batch_size=abc") },
			want: []string{"data.batch_size", `"abc"`, "integer"},
			hint: []string{"expected an integer"},
		},
		{
			name: "env_unknown_variable",
			args: func(e *badEnv) []string { return e.train() },
			env:  []string{"HJEPA_TRAINING_LRR=1e-3"},
			want: []string{"HJEPA_TRAINING_LRR"},
			hint: []string{"did you mean HJEPA_TRAINING_LR"},
		},
		{
			name: "lr_zero",
			args: func(e *badEnv) []string { return e.train("training.lr=0") },
			want: []string{"training.lr", "is 0"},
			hint: []string{"must be a finite number > 0"},
		},
		{
			name: "lr_negative",
			args: func(e *badEnv) []string { return e.train("training.lr=-1e-3") },
			want: []string{"training.lr", "-0.001"},
			hint: []string{"must be a finite number > 0"},
		},
		{
			name: "batch_size_zero",
			args: func(e *badEnv) []string { return e.train("data.batch_size=0") },
			want: []string{"data.batch_size", "is 0"},
			hint: []string{"must be at least 1"},
		},
		{
			name: "beta2_one",
			args: func(e *badEnv) []string { return e.train("training.betas=[0.9,1.0]") },
			want: []string{"training.betas", "element 1"},
			hint: []string{"[0, 1)"},
		},
		{
			name: "several_problems_reported_at_once",
			args: func(e *badEnv) []string {
				return []string{"config", "validate", "--config", syntheticCfg, "--set", "training.lr=0", "--set", "data.batch_size=0", "--set", "masking.mask_scale=[0,0.3]"}
			},
			want: []string{"3 problems", "training.lr", "data.batch_size", "masking.mask_scale"},
			hint: []string{"must be"},
		},
		{
			name: "image_size_not_divisible_by_patch",
			args: func(e *badEnv) []string { return e.train("data.image_size=17") },
			want: []string{"data.image_size", "17", "patch size 2"},
			hint: []string{"use a multiple of 2"},
		},
		{
			name: "hierarchy_weights_length",
			args: func(e *badEnv) []string { return e.train("loss.hierarchy_weights=[1,0.5]") },
			want: []string{"loss.hierarchy_weights", "2 weights", "model.num_hierarchies is 3"},
			hint: []string{"give one weight per level"},
		},
		{
			name: "mask_scale_above_one",
			args: func(e *badEnv) []string { return e.train("masking.mask_scale=[0.2,1.5]") },
			want: []string{"masking.mask_scale", "1.5"},
			hint: []string{"(0, 1)"},
		},
		{
			name: "heads_do_not_divide_dim",
			args: func(e *badEnv) []string { return e.train("model.num_heads=3") },
			want: []string{"model.num_heads", "embed_dim 32"},
			hint: []string{"pick a divisor of 32"},
		},
		{
			name: "unknown_dataset",
			args: func(e *badEnv) []string { return e.train("data.dataset=mnistt") },
			want: []string{"data.dataset", `"mnistt"`},
			hint: []string{"must be one of idx, cifar10, cifar100, imagefolder, synthetic"},
		},
		{
			name: "unknown_device",
			args: func(e *badEnv) []string { return append(e.train(), "--device", "tpu") },
			want: []string{"device", `"tpu"`},
			hint: []string{"must be auto, cpu, cuda or cuda:K"},
		},
		{
			name: "out_is_a_file",
			args: func(e *badEnv) []string {
				f := e.write("not-a-dir", []byte("x"))
				return trainArgs(f, "training.max_steps=10")
			},
			want: []string{"not-a-dir", "not a directory"},
			hint: []string{"set --out to a writable directory"},
		},

		// Datasets.
		{
			name: "idx_path_missing",
			args: func(e *badEnv) []string { return e.train(dataSets("idx", e.path("no-such-dir"))...) },
			want: []string{"no-such-dir", "no such file or directory"},
			hint: []string{"set data.path"},
		},
		{
			name: "idx_bad_magic",
			args: func(e *badEnv) []string {
				d := e.writeIDX("idx")
				e.write("idx/train-images-idx3-ubyte", idxImages(0x00000801, 64))
				return e.train(dataSets("idx", d)...)
			},
			want: []string{"train-images-idx3-ubyte", "magic 0x00000801"},
			hint: []string{"hjepa data verify", "download"},
		},
		{
			name: "idx_truncated",
			args: func(e *badEnv) []string {
				d := e.writeIDX("idx")
				e.write("idx/train-images-idx3-ubyte", idxImages(0x00000803, 64)[:5000])
				return e.train(dataSets("idx", d)...)
			},
			want: []string{"train-images-idx3-ubyte", "truncated"},
			hint: []string{"hjepa data verify", "download"},
		},
		{
			name: "idx_label_count_mismatch",
			args: func(e *badEnv) []string {
				d := e.writeIDX("idx")
				e.write("idx/train-labels-idx1-ubyte", idxLabels(60))
				return e.train(dataSets("idx", d)...)
			},
			want: []string{"train-labels-idx1-ubyte", "60 labels", "64 images"},
			hint: []string{"hjepa data verify", "download"},
		},
		{
			name: "data_verify_idx_bad_magic",
			args: func(e *badEnv) []string {
				d := e.writeIDX("idx")
				e.write("idx/t10k-images-idx3-ubyte", idxImages(0x12345678, 32))
				return []string{"data", "verify", d}
			},
			want: []string{"t10k-images-idx3-ubyte", "bad IDX magic"},
			hint: []string{"unreadable or corrupt"},
		},
		{
			name: "data_verify_path_missing",
			args: func(e *badEnv) []string { return []string{"data", "verify", e.path("no-such-dataset")} },
			want: []string{"no-such-dataset", "no such file or directory"},
			hint: []string{"check the path", "hjepa data download", "data.path"},
		},
		{
			name: "cifar_wrong_length",
			args: func(e *badEnv) []string {
				d := e.writeCIFAR10("cifar")
				e.write("cifar/data_batch_3.bin", make([]byte, 3073*4+100))
				return e.train(dataSets("cifar10", d, "data.channels=3", "data.mean=[0.5,0.5,0.5]", "data.std=[0.25,0.25,0.25]")...)
			},
			want: []string{"data_batch_3.bin", "3073-byte record"},
			hint: []string{"hjepa data verify", "download"},
		},
		{
			name: "data_verify_cifar_wrong_length",
			args: func(e *badEnv) []string {
				d := e.writeCIFAR10("cifar")
				e.write("cifar/test_batch.bin", make([]byte, 3073*4-1))
				return []string{"data", "verify", d}
			},
			want: []string{"test_batch.bin", "3073-byte record"},
			hint: []string{"unreadable or corrupt"},
		},
		{
			name: "imagefolder_truncated_jpeg",
			args: func(e *badEnv) []string {
				d := e.writeImageFolder("folder")
				good := jpegFile(e.t, 7)
				e.write("folder/train/b/07.jpg", good[:len(good)/2])
				// A new run needs its own --out: run/ holds the good run's
				// checkpoints, which a new run refuses to replace.
				return trainArgs(e.path("fresh"), append([]string{"training.max_steps=10", "threads=1"}, dataSets("imagefolder", d)...)...)
			},
			want: []string{filepath.Join("train", "b", "07.jpg")},
			hint: []string{"hjepa data verify"},
		},
		{
			// A new run into an --out that holds another run's checkpoints
			// would replace its checkpoint_latest: refused.
			name: "new_run_over_existing_checkpoints",
			args: func(e *badEnv) []string { return e.train() },
			want: []string{"already holds", "checkpoint_latest"},
			hint: []string{"--resume", "another --out"},
		},
		{
			name: "data_verify_imagefolder_truncated_jpeg",
			args: func(e *badEnv) []string {
				d := e.writeImageFolder("folder")
				good := jpegFile(e.t, 3)
				e.write("folder/train/a/03.jpg", good[:len(good)/3])
				return []string{"data", "verify", d}
			},
			want: []string{filepath.Join("train", "a", "03.jpg")},
			hint: []string{"unreadable or corrupt"},
		},
		{
			name: "imagefolder_empty_class",
			args: func(e *badEnv) []string {
				d := e.writeImageFolder("folder")
				if err := os.RemoveAll(e.path("folder", "train", "b")); err != nil {
					e.t.Fatal(err)
				}
				if err := os.MkdirAll(e.path("folder", "train", "b"), 0o755); err != nil {
					e.t.Fatal(err)
				}
				return e.train(dataSets("imagefolder", d)...)
			},
			want: []string{filepath.Join("train", "b"), "no .jpg/.jpeg/.png images"},
			hint: []string{"remove them or add images"},
		},

		// Checkpoints.
		{
			name: "resume_without_checkpoint",
			args: func(e *badEnv) []string {
				if err := os.RemoveAll(filepath.Join(e.run, "checkpoints")); err != nil {
					e.t.Fatal(err)
				}
				return e.resume()
			},
			want: []string{"--resume", "no checkpoint under", "checkpoints"},
			hint: []string{"run without --resume"},
		},
		{
			name: "resume_truncated_model",
			args: func(e *badEnv) []string {
				p := filepath.Join(e.onlyLatest(), checkpoint.ModelFile)
				if err := os.Truncate(p, 4000); err != nil {
					e.t.Fatal(err)
				}
				return e.resume()
			},
			want: []string{"--resume", "model.safetensors", "truncated"},
			hint: []string{"start a new --out", "run without --resume"},
		},
		{
			name: "resume_corrupt_state_json",
			args: func(e *badEnv) []string {
				p := filepath.Join(e.onlyLatest(), checkpoint.StateFile)
				if err := os.WriteFile(p, []byte(`{"format": 1, "step": `), 0o644); err != nil {
					e.t.Fatal(err)
				}
				return e.resume()
			},
			want: []string{"--resume", "state.json", "not valid JSON"},
			hint: []string{"start a new --out", "run without --resume"},
		},
		{
			name: "resume_edited_state_json",
			args: func(e *badEnv) []string {
				p := filepath.Join(e.onlyLatest(), checkpoint.StateFile)
				raw, err := os.ReadFile(p)
				if err != nil {
					e.t.Fatal(err)
				}
				edited := bytes.Replace(raw, []byte(`"step": 10`), []byte(`"step": 11`), 1)
				if bytes.Equal(edited, raw) {
					e.t.Fatalf("state.json has no \"step\": 10:\n%s", raw)
				}
				if err := os.WriteFile(p, edited, 0o644); err != nil {
					e.t.Fatal(err)
				}
				return e.resume()
			},
			want: []string{"--resume", "state.json"},
			hint: []string{"start a new --out", "run without --resume"},
		},
		{
			name: "resume_mismatched_embed_dim",
			args: func(e *badEnv) []string { return e.resume("model.embed_dim=64") },
			want: append([]string{"--resume"}, mismatch...),
			hint: []string{"use a matching --config or start a new --out"},
		},
		{
			// Prediction heads add parameters (the number of levels alone
			// does not: targets are parameter-free).
			name: "resume_mismatched_prediction_heads",
			args: func(e *badEnv) []string {
				return e.resume("model.prediction_heads=true")
			},
			want: append([]string{"--resume"}, mismatch...),
			hint: []string{"use a matching --config or start a new --out"},
		},
		{
			name: "eval_checkpoint_missing",
			args: func(e *badEnv) []string {
				return []string{"eval", "--config", syntheticCfg, "--checkpoint", filepath.Join(e.run, "checkpoints", "checkpoint_step_99")}
			},
			want: []string{"checkpoint_step_99", "no such checkpoint directory"},
			hint: []string{"check the path"},
		},
		{
			name: "eval_checkpoint_truncated",
			args: func(e *badEnv) []string {
				p := filepath.Join(e.run, "checkpoints", "checkpoint_step_5", checkpoint.ModelFile)
				if err := os.Truncate(p, 4000); err != nil {
					e.t.Fatal(err)
				}
				return []string{"eval", "--config", syntheticCfg, "--checkpoint", filepath.Dir(p)}
			},
			want: []string{"checkpoint_step_5", "model.safetensors", "truncated"},
			hint: []string{"damaged"},
		},
		{
			name: "eval_mismatched_embed_dim",
			args: func(e *badEnv) []string {
				return []string{"eval", "--config", syntheticCfg, "--set", "model.embed_dim=64", "--checkpoint", filepath.Join(e.run, "checkpoints", checkpoint.LatestName)}
			},
			want: []string{checkpoint.LatestName, "model.embed_dim 32, not 64"},
			hint: []string{"take the model from the checkpoint", "may change only data.*"},
		},
		{
			name: "eval_checkpoint_without_state",
			args: func(e *badEnv) []string {
				return []string{"eval", "--checkpoint", filepath.Join(e.run, "checkpoints")}
			},
			want: []string{filepath.Join("checkpoints", "state.json"), "missing"},
			hint: []string{"pass --checkpoint a checkpoint directory"},
		},
		{
			name: "eval_init_without_config",
			args: func(e *badEnv) []string { return []string{"eval", "--checkpoint", "init"} },
			want: []string{"--checkpoint init"},
			hint: []string{"give --config"},
		},

		// Full disk.
		{
			name: "disk_full_before_training",
			root: true,
			args: func(e *badEnv) []string {
				// 1 MiB holds the existing checkpoint (~0.4 MiB) but not
				// keep_last+2 new ones: the preflight refuses to start.
				mnt := e.tmpfs(1 << 20)
				ck := filepath.Join(mnt, "ck")
				copyTree(e.t, filepath.Join(e.run, "checkpoints", checkpoint.LatestName), filepath.Join(ck, checkpoint.LatestName))
				e.protect = append(e.protect, ck)
				return e.resume("checkpoint.dir=" + ck)
			},
			want: []string{"tmpfs", "free"},
			hint: []string{"free disk space"},
		},
		{
			name: "disk_full_while_checkpointing",
			root: true,
			args: func(e *badEnv) []string {
				// Room for the preflight; the disk is filled once training
				// has started, before the step-150 checkpoint.
				mnt := e.tmpfs(12 << 20)
				ck := filepath.Join(mnt, "ck")
				copyTree(e.t, filepath.Join(e.run, "checkpoints", checkpoint.LatestName), filepath.Join(ck, checkpoint.LatestName))
				e.protect = append(e.protect, ck)
				// The during hook watches the log of this run only.
				if err := os.RemoveAll(filepath.Join(e.run, "logs")); err != nil {
					e.t.Fatal(err)
				}
				return e.resume("checkpoint.dir="+ck, "training.max_steps=100000", "checkpoint.every_steps=150",
					"checkpoint.save_frequency=0", "evaluation.eval_frequency=0", "logging.every_steps=10")
			},
			during: func(e *badEnv) {
				logPath := filepath.Join(e.run, "logs", "train.log")
				msgs := func() string {
					raw, _ := os.ReadFile(logPath)
					return string(raw)
				}
				if !poll(e.t, 30*time.Second, func() bool { return strings.Contains(msgs(), `"msg":"training"`) }) {
					e.t.Errorf("training did not start within 30 s")
					return
				}
				fillDisk(e.t, filepath.Join(e.dir, "tmpfs"))
				if strings.Contains(msgs(), `"msg":"checkpoint"`) {
					e.t.Errorf("a checkpoint was written before the disk was full; the case did not test ENOSPC")
				}
			},
			want: []string{"checkpoint at step 150", "no space left on device"},
			hint: []string{"free disk space"},
		},
	}
}

// TestBadInput runs each bad-input case as a real process: exit status 1, a
// message naming the key or file and saying what to do, no panic, and
// pre-existing checkpoints left byte-identical.
func TestBadInput(t *testing.T) {
	good := goodRun(t)
	cases := badInputCases()
	if len(cases) < 25 {
		t.Fatalf("only %d bad-input cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root to mount a tmpfs; skipped")
			}
			if tc.during == nil {
				t.Parallel()
			}
			e := &badEnv{t: t, dir: t.TempDir()}
			e.run = filepath.Join(e.dir, "run")
			copyTree(t, good, e.run)
			args := tc.args(e)
			if e.asNobody && os.Geteuid() == 0 {
				// root reads any file: run as nobody, who must reach e.dir.
				for _, d := range []string{filepath.Dir(e.dir), e.dir} {
					if err := os.Chmod(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			e.protect = append(e.protect, filepath.Join(e.run, "checkpoints"))
			before := map[string]map[string]string{}
			for _, d := range e.protect {
				if _, err := os.Stat(d); err == nil {
					before[d] = dirDigest(t, d)
				}
			}

			c, so, se := hjepaCmd(e.dir, tc.env, args...)
			if e.asNobody && os.Geteuid() == 0 {
				c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			e.cmd = c
			if tc.during != nil {
				tc.during(e)
			}
			timer := time.AfterFunc(60*time.Second, func() { _ = c.Process.Kill() })
			r := wait(t, c, so, se)
			timer.Stop()

			if r.code != 1 {
				t.Errorf("exit status %d, want 1", r.code)
			}
			all := r.stdout + r.stderr
			if strings.Contains(all, "panic:") || strings.Contains(all, "goroutine ") && strings.Contains(all, "[running]") {
				t.Errorf("the output holds a panic or goroutine dump")
			}
			msg := lastError(r.stderr)
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error message lacks %q", w)
				}
			}
			if len(tc.hint) > 0 && !containsAny(msg, tc.hint) {
				t.Errorf("error message says what is wrong but not what to do (want one of %q)", tc.hint)
			}
			for d, b := range before {
				if diff := diffDigests(b, dirDigest(t, d)); len(diff) > 0 {
					t.Errorf("pre-existing checkpoints in %s changed: %s", d, strings.Join(diff, ", "))
				}
			}
			if t.Failed() {
				t.Logf("hjepa %s\n%s", strings.Join(args, " "), r)
			} else {
				t.Logf("%s", firstLine(msg))
			}
		})
	}
}

// lastError is the "hjepa: ..." message main prints on failure (to the end of
// stderr: a message may span lines).
func lastError(stderr string) string {
	i := strings.LastIndex(stderr, "hjepa: ")
	if i < 0 {
		return stderr
	}
	return stderr[i:]
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}
