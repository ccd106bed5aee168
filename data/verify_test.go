package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyImageFolderListsEveryProblem(t *testing.T) {
	root := t.TempDir()
	good := pngBytes(t, rgbImage(4, 4))
	jb := jpegBytes(t, rgbImage(8, 8))
	for _, split := range []string{"train", "val"} {
		writeFile(t, filepath.Join(root, split, "cat", "1.png"), good)
		writeFile(t, filepath.Join(root, split, "cat", "2.png"), good)
		writeFile(t, filepath.Join(root, split, "dog", "1.jpg"), jpegBytes(t, rgbImage(4, 4)))
	}
	bad1 := writeFile(t, filepath.Join(root, "train", "dog", "broken.jpg"), jb[:len(jb)/3])
	bad2 := writeFile(t, filepath.Join(root, "val", "cat", "garbage.png"), []byte("not a png at all"))
	os.MkdirAll(filepath.Join(root, "train", "empty"), 0o755)

	r, err := Verify(root)
	if err != nil {
		t.Fatal(err)
	}
	if r.Format != "imagefolder" || len(r.Splits) != 2 {
		t.Fatalf("report %+v", r)
	}
	tr := r.Splits[0]
	if tr.Name != "train" || tr.Count != 3 || strings.Join(tr.Classes, ",") != "cat,dog,empty" || tr.PerClass[0] != 2 || tr.PerClass[1] != 1 || tr.Channels != 3 || tr.Height != 4 {
		t.Fatalf("train split %+v", tr)
	}
	paths := map[string]bool{}
	for _, p := range r.Problems {
		paths[p.Path] = true
	}
	for _, want := range []string{bad1, bad2, filepath.Join(root, "train", "empty")} {
		if !paths[want] {
			t.Errorf("problem %s not reported; got %+v", want, r.Problems)
		}
	}
	if len(r.Problems) != 3 || r.Err() == nil || !strings.Contains(r.String(), "3 problem(s)") {
		t.Fatalf("problems %+v\n%s", r.Problems, r)
	}
}

func TestVerifyIDXAndCIFAR(t *testing.T) {
	dir := t.TempDir()
	writeIDXDir(t, dir, 20, 10, true)
	r, err := Verify(dir)
	if err != nil || r.Format != "idx" || r.Err() != nil {
		t.Fatalf("%v %+v", err, r)
	}
	if r.Splits[0].Count != 20 || r.Splits[0].PerClass[3] != 2 || r.Splits[1].Count != 10 {
		t.Fatalf("splits %+v", r.Splits)
	}
	// Corrupt both IDX splits: both are reported.
	os.WriteFile(filepath.Join(dir, "train-labels-idx1-ubyte.gz"), gz(t, idxLabels(19)), 0o644)
	os.WriteFile(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), []byte{1, 2, 3}, 0o644)
	r, _ = Verify(dir)
	if len(r.Problems) != 2 {
		t.Fatalf("problems %+v", r.Problems)
	}

	c := t.TempDir()
	sub := filepath.Join(c, "cifar-10-batches-bin")
	writeCIFAR10(t, sub, 4)
	os.WriteFile(filepath.Join(sub, "data_batch_2.bin"), cifarRecords(2, false)[:5000], 0o644)
	os.Remove(filepath.Join(sub, "data_batch_4.bin"))
	r, err = Verify(c)
	if err != nil || r.Format != "cifar10" {
		t.Fatal(err, r)
	}
	if r.Splits[0].Count != 12 || r.Splits[1].Count != 4 || r.Splits[0].Classes[0] != "a0" || len(r.Problems) != 2 {
		t.Fatalf("%s", r)
	}
	if !strings.Contains(r.Problems[0].Path, "data_batch_2.bin") || !strings.Contains(r.Problems[1].Path, "data_batch_4.bin") {
		t.Fatalf("problems %+v", r.Problems)
	}
}

func TestVerifyMissingOrUnknown(t *testing.T) {
	if _, err := Verify(filepath.Join(t.TempDir(), "absent")); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Fatalf("got %v", err)
	}
	if _, err := Verify(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not an IDX, CIFAR binary or ImageFolder") {
		t.Fatalf("got %v", err)
	}
}
