package data

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// fixtureServer serves files; dropFirst makes the first full request for a
// file stop halfway (connection closed); ignoreRange answers 200 always.
type fixtureServer struct {
	files       map[string][]byte
	dropFirst   bool
	ignoreRange bool
	mu          sync.Mutex
	dropped     map[string]bool
	ranges      []string
}

func (s *fixtureServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	b, ok := s.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	drop := s.dropFirst && !s.dropped[name]
	s.dropped[name] = true
	s.mu.Unlock()
	start := 0
	if rg := r.Header.Get("Range"); rg != "" && !s.ignoreRange {
		start, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"))
		w.Header().Set("Content-Range", "bytes "+strconv.Itoa(start)+"-"+strconv.Itoa(len(b)-1)+"/"+strconv.Itoa(len(b)))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)-start))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
	}
	if drop {
		w.Write(b[start : start+(len(b)-start)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Write(b[start:])
}

func mnistFixtures(t *testing.T) (map[string][]byte, map[string]string) {
	files := map[string][]byte{
		"train-images-idx3-ubyte.gz": gz(t, idxImages(30, 4, 3)),
		"train-labels-idx1-ubyte.gz": gz(t, idxLabels(30)),
		"t10k-images-idx3-ubyte.gz":  gz(t, idxImages(7, 4, 3)),
		"t10k-labels-idx1-ubyte.gz":  gz(t, idxLabels(7)),
	}
	sums := map[string]string{}
	for k, v := range files {
		sums[k] = sha(v)
	}
	return files, sums
}

func TestDownloadResume(t *testing.T) {
	for _, ignoreRange := range []bool{false, true} {
		files, sums := mnistFixtures(t)
		fs := &fixtureServer{files: files, dropFirst: true, ignoreRange: ignoreRange, dropped: map[string]bool{}}
		srv := httptest.NewServer(fs)
		dir := t.TempDir()
		err := Download(context.Background(), "fashion-mnist", dir, DownloadOptions{BaseURL: srv.URL, SHA256: sums, RetryDelay: time.Millisecond})
		srv.Close()
		if err != nil {
			t.Fatalf("ignoreRange=%v: %v", ignoreRange, err)
		}
		resumed := 0
		for _, r := range fs.ranges {
			if r != "" {
				resumed++
			}
		}
		if resumed != 4 {
			t.Fatalf("ignoreRange=%v: %d range requests, want 4 (%q)", ignoreRange, resumed, fs.ranges)
		}
		d, err := OpenIDX(dir, "train")
		if err != nil || d.Len() != 30 {
			t.Fatalf("downloaded dataset: %v", err)
		}
		if m, _ := filepath.Glob(filepath.Join(dir, "*.part")); len(m) != 0 {
			t.Fatalf("leftover %v", m)
		}
	}
}

func TestDownloadChecksumMismatch(t *testing.T) {
	files, sums := mnistFixtures(t)
	sums["train-labels-idx1-ubyte.gz"] = strings.Repeat("0", 64)
	srv := httptest.NewServer(&fixtureServer{files: files, dropped: map[string]bool{}})
	defer srv.Close()
	dir := t.TempDir()
	err := Download(context.Background(), "mnist", dir, DownloadOptions{BaseURL: srv.URL, SHA256: sums})
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "train-labels-idx1-ubyte.gz") {
		t.Fatalf("got %v", err)
	}
	for _, p := range []string{"train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz.part"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s kept after checksum failure", p)
		}
	}
	// Files verified before the failure are in place and not fetched again.
	if _, err := os.Stat(filepath.Join(dir, "train-images-idx3-ubyte.gz")); err != nil {
		t.Fatal(err)
	}
}

func TestDownloadCIFARExtractsAndIsIdempotent(t *testing.T) {
	var tgz bytes.Buffer
	zw := gzip.NewWriter(&tgz)
	tw := tar.NewWriter(zw)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
	}
	tw.WriteHeader(&tar.Header{Name: "cifar-10-batches-bin/", Mode: 0o755, Typeflag: tar.TypeDir})
	for i := 1; i <= 5; i++ {
		add("cifar-10-batches-bin/data_batch_"+strconv.Itoa(i)+".bin", cifarRecords(2, false))
	}
	add("cifar-10-batches-bin/test_batch.bin", cifarRecords(3, false))
	tw.Close()
	zw.Close()
	fs := &fixtureServer{files: map[string][]byte{"cifar-10-binary.tar.gz": tgz.Bytes()}, dropped: map[string]bool{}}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	dir := t.TempDir()
	opts := DownloadOptions{BaseURL: srv.URL, SHA256: map[string]string{"cifar-10-binary.tar.gz": sha(tgz.Bytes())}}
	for range 2 {
		if err := Download(context.Background(), "cifar10", dir, opts); err != nil {
			t.Fatal(err)
		}
	}
	if len(fs.ranges) != 1 {
		t.Fatalf("%d requests, want 1 (second run must be a no-op)", len(fs.ranges))
	}
	d, err := OpenCIFAR(dir, "cifar10", "train")
	if err != nil || d.Len() != 10 {
		t.Fatalf("%v", err)
	}
}

func TestDownloadErrors(t *testing.T) {
	if err := Download(context.Background(), "imagenet", t.TempDir(), DownloadOptions{}); err == nil || !strings.Contains(err.Error(), "known: cifar10") {
		t.Fatalf("got %v", err)
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	err := Download(context.Background(), "mnist", t.TempDir(), DownloadOptions{BaseURL: srv.URL})
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v", err)
	}
}
