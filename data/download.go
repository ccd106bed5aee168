package data

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RemoteFile is one file of a downloadable dataset.
type RemoteFile struct {
	Name   string
	Size   int64  // bytes, informative (progress)
	SHA256 string // hex
	// Extract marks a .tar.gz to unpack into the download directory.
	Extract bool
}

// RemoteDataset is a downloadable dataset: its files under BaseURL.
type RemoteDataset struct {
	Name    string
	BaseURL string
	Files   []RemoteFile
}

// Remotes are the datasets `hjepa data download` knows. URLs are the ones
// torchvision and TensorFlow Datasets use; SHA-256 values are those
// published in TensorFlow Datasets' url_checksums (cifar10.txt,
// cifar100.txt, fashion_mnist.txt) and torchvision's prototype MNIST
// datasets (mnist.py), which agree with the md5 sums of torchvision's
// MNIST/FashionMNIST classes. CIFAR is the binary version (the .bin batches
// OpenCIFAR reads), not the Python pickles.
var Remotes = map[string]RemoteDataset{
	"mnist": {Name: "mnist", BaseURL: "https://ossci-datasets.s3.amazonaws.com/mnist/", Files: []RemoteFile{
		{Name: "train-images-idx3-ubyte.gz", Size: 9912422, SHA256: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"},
		{Name: "train-labels-idx1-ubyte.gz", Size: 28881, SHA256: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"},
		{Name: "t10k-images-idx3-ubyte.gz", Size: 1648877, SHA256: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"},
		{Name: "t10k-labels-idx1-ubyte.gz", Size: 4542, SHA256: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"},
	}},
	"fashion-mnist": {Name: "fashion-mnist", BaseURL: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", Files: []RemoteFile{
		{Name: "train-images-idx3-ubyte.gz", Size: 26421880, SHA256: "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"},
		{Name: "train-labels-idx1-ubyte.gz", Size: 29515, SHA256: "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"},
		{Name: "t10k-images-idx3-ubyte.gz", Size: 4422102, SHA256: "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"},
		{Name: "t10k-labels-idx1-ubyte.gz", Size: 5148, SHA256: "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"},
	}},
	"cifar10": {Name: "cifar10", BaseURL: "https://www.cs.toronto.edu/~kriz/", Files: []RemoteFile{
		{Name: "cifar-10-binary.tar.gz", Size: 170052171, SHA256: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", Extract: true},
	}},
	"cifar100": {Name: "cifar100", BaseURL: "https://www.cs.toronto.edu/~kriz/", Files: []RemoteFile{
		{Name: "cifar-100-binary.tar.gz", Size: 168513733, SHA256: "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec", Extract: true},
	}},
}

// DownloadOptions tune Download.
type DownloadOptions struct {
	// BaseURL replaces the dataset's base URL (a mirror, or a test server).
	BaseURL string
	// SHA256 overrides the expected checksum per file name.
	SHA256 map[string]string
	// Client is the HTTP client (nil: one with a 30 s header timeout).
	Client *http.Client
	// Retries is how many times a broken transfer is resumed (0: 5).
	Retries int
	// RetryDelay is the pause before a resume (0: 1 s).
	RetryDelay time.Duration
	// Progress, when set, is called as bytes arrive.
	Progress func(file string, done, total int64)
}

// ErrChecksum is wrapped when a downloaded file's SHA-256 is wrong.
var ErrChecksum = errors.New("checksum mismatch")

// Download fetches dataset name (mnist, fashion-mnist, cifar10, cifar100)
// into dir. Each file is fetched to <file>.part, resumed with an HTTP Range
// request after a broken transfer (restarted from zero when the server
// ignores Range), checked against its SHA-256 and only then renamed into
// place. A file already present with the right checksum is not fetched
// again. On a checksum mismatch the .part file is deleted (resuming it could
// never succeed) and the error wraps ErrChecksum. CIFAR archives are
// extracted into dir (cifar-10-batches-bin/, cifar-100-binary/); the archive
// is kept so a rerun is a no-op.
func Download(ctx context.Context, name, dir string, opts DownloadOptions) error {
	rd, ok := Remotes[name]
	if !ok {
		known := make([]string, 0, len(Remotes))
		for k := range Remotes {
			known = append(known, k)
		}
		sort.Strings(known)
		return fmt.Errorf("download: unknown dataset %q (known: %s)", name, strings.Join(known, ", "))
	}
	base := rd.BaseURL
	if opts.BaseURL != "" {
		base = opts.BaseURL
	}
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 30 * time.Second}}
	}
	if opts.Retries <= 0 {
		opts.Retries = 5
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("download %s: %w", name, err)
	}
	for _, f := range rd.Files {
		want := f.SHA256
		if s, ok := opts.SHA256[f.Name]; ok {
			want = s
		}
		dst := filepath.Join(dir, f.Name)
		if err := fetchFile(ctx, base+f.Name, dst, want, f.Size, opts); err != nil {
			return fmt.Errorf("download %s: %w", name, err)
		}
		if f.Extract {
			if err := extractTarGz(dst, dir); err != nil {
				return fmt.Errorf("download %s: %w", name, err)
			}
		}
	}
	return nil
}

// fileSHA256 hashes a file.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// fetchFile downloads url to dst via dst.part with resume and checksum.
func fetchFile(ctx context.Context, url, dst, want string, size int64, opts DownloadOptions) error {
	if sum, err := fileSHA256(dst); err == nil && sum == want {
		return nil
	}
	part := dst + ".part"
	var lastErr error
	for attempt := 0; attempt <= opts.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(opts.RetryDelay):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		lastErr = fetchOnce(ctx, url, part, size, opts)
		if lastErr == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm *permanentError
		if errors.As(lastErr, &perm) {
			return perm.err
		}
	}
	if lastErr != nil {
		return fmt.Errorf("%s: %w (after %d attempts; rerun to resume from %s)", url, lastErr, opts.Retries+1, part)
	}
	sum, err := fileSHA256(part)
	if err != nil {
		return err
	}
	if sum != want {
		os.Remove(part)
		return fmt.Errorf("%s: %w: sha256 %s, want %s; removed %s, rerun to fetch it again or check the mirror", url, ErrChecksum, sum, want, part)
	}
	if err := os.Rename(part, dst); err != nil {
		return err
	}
	return nil
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

// fetchOnce appends the rest of url to part, or restarts it when the server
// ignores the Range request.
func fetchOnce(ctx context.Context, url, part string, size int64, opts DownloadOptions) error {
	var have int64
	if st, err := os.Stat(part); err == nil {
		have = st.Size()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return &permanentError{err}
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	flags := os.O_WRONLY | os.O_CREATE
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0 && strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(have, 10)+"-"):
		flags |= os.O_APPEND
	case resp.StatusCode == http.StatusOK:
		flags |= os.O_TRUNC
		have = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
		// The .part holds the whole file already; the checksum decides.
		return nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		return &permanentError{fmt.Errorf("%s: HTTP %s", url, resp.Status)}
	default:
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return &permanentError{err}
	}
	total := size
	if resp.ContentLength >= 0 {
		total = have + resp.ContentLength
	}
	var w io.Writer = f
	if opts.Progress != nil {
		w = &progressWriter{w: f, name: filepath.Base(strings.TrimSuffix(part, ".part")), done: have, total: total, fn: opts.Progress}
	}
	_, cerr := io.Copy(w, resp.Body)
	if err := f.Close(); err != nil && cerr == nil {
		cerr = err
	}
	return cerr
}

type progressWriter struct {
	w           io.Writer
	name        string
	done, total int64
	fn          func(string, int64, int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	p.fn(p.name, p.done, p.total)
	return n, err
}

// extractTarGz unpacks regular files and folders of archive into dir,
// refusing paths that escape dir; each file is written to a temporary name
// and renamed.
func extractTarGz(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return corruptf(archive, "gzip: %v", err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return corruptf(archive, "tar: %v", err)
		}
		name := filepath.Clean(filepath.FromSlash(h.Name))
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return corruptf(archive, "entry %q escapes the target folder", h.Name)
		}
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			tmp := target + ".extract"
			out, err := os.Create(tmp)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				out.Close()
				os.Remove(tmp)
				return corruptf(archive, "extract %s: %v", h.Name, err)
			}
			if err := out.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp, target); err != nil {
				return err
			}
		}
	}
}
