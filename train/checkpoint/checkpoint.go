// Package checkpoint stores training checkpoints on disk and reads them back.
//
// A checkpoint is a directory of three files (DESIGN.md section 7):
//
//	model.safetensors      model parameters, F32, names as the model gives them
//	optimizer.safetensors  optimizer state (AdamW moments), F32
//	state.json             the trainer's state (step, epoch, sampler, RNG, schedules,
//	                       config, metrics, versions), pretty-printed; its schema
//	                       belongs to the trainer
//
// model.safetensors' metadata is the manifest that ties the three together:
// the CRC-32C of each file's tensor data and of state.json, so a truncated,
// bit-rotted or mixed-up file is reported instead of being resumed from.
// Each safetensors file also carries the CRC-32C of its own tensor index
// (names, shapes, offsets), which the data checksums do not cover: a
// damaged header could otherwise rename or reshape a tensor unnoticed.
//
// # Atomicity
//
// Write never modifies a checkpoint in place. It fills a temporary sibling
// directory .tmp-<base>-<pid>-<rand>, fsyncs every file and the directory,
// and then swaps it in:
//
//   - dir absent: rename(tmp, dir); fsync(parent).
//   - dir present, Linux: renameat2(tmp, dir, RENAME_EXCHANGE) swaps the two
//     in one atomic step; fsync(parent); remove tmp (now the old version).
//   - dir present elsewhere (or a filesystem without RENAME_EXCHANGE):
//     rename(dir, .old-<base>-<pid>-<rand>); rename(tmp, dir); fsync(parent);
//     remove the .old directory.
//
// A crash at any point leaves under dir either the old or the new complete
// checkpoint, or leaves dir missing with a complete .old-<base>-* beside it.
// Read, Write and the Manager's scans recover: a .old-* whose dir is missing
// is renamed back, a .old-* whose dir exists is removed, and .tmp-* left by
// dead processes (or by an earlier incarnation of this process) are removed.
// Side directories of another live process are left alone: one process
// writes a given checkpoint directory at a time. Within a process, swaps and
// recoveries in one directory are serialised, so a scan never takes the
// process's own swap in progress for a crash.
//
// On any error before the swap (ENOSPC included) the temporary directory is
// removed and the existing checkpoint is untouched.
package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hjepa-go/hjepa/tensor/safetensors"
)

// File names inside a checkpoint directory.
const (
	ModelFile     = "model.safetensors"
	OptimizerFile = "optimizer.safetensors"
	StateFile     = "state.json"
	// BestFile is present only in best checkpoints (see Manager.SaveBest).
	BestFile = "best.json"
)

// formatVersion is stored as metadata "hjepa.checkpoint"; Read rejects other
// values but legacyFormat, the format before the index checksum (read
// without it, as before).
const (
	formatVersion = "2"
	legacyFormat  = "1"
)

// Metadata keys of model.safetensors (the manifest) and optimizer.safetensors.
const (
	metaVersion  = "hjepa.checkpoint"
	metaSavedAt  = "hjepa.saved_at"         // RFC 3339, UTC, nanoseconds
	metaCRC      = "hjepa.crc32c"           // this file's tensor data
	metaOptimCRC = "hjepa.optimizer_crc32c" // optimizer.safetensors' tensor data
	metaStateCRC = "hjepa.state_crc32c"     // state.json, byte for byte
	metaIndexCRC = "hjepa.index_crc32c"     // this file's tensor index (see indexCRC)
)

// Manifest keys of each file, besides metaIndexCRC (format 2 only). Read
// wants exactly these: a damaged key name must not turn a format 2 file into
// one that looks legacy, whose index nothing checks.
var (
	modelMetaKeys = []string{"format", metaVersion, metaSavedAt, metaCRC, metaOptimCRC, metaStateCRC}
	optimMetaKeys = []string{"format", metaVersion, metaCRC}
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Tensor is one named float32 tensor, row-major.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// Checkpoint is everything a resume needs.
type Checkpoint struct {
	Model     []Tensor
	Optimizer []Tensor
	// State is the trainer's JSON object. Write stores it indented; Read
	// returns the stored (indented) bytes.
	State json.RawMessage
}

// Write stores ck as the checkpoint directory dir, atomically replacing any
// checkpoint already there (see the package comment). On error the previous
// checkpoint under dir, if any, is untouched and no temporary directory is
// left behind.
func Write(dir string, ck *Checkpoint) error {
	return writer{}.write(dir, ck)
}

// write is Write through wr's faults.
func (wr writer) write(dir string, ck *Checkpoint) (err error) {
	dir = filepath.Clean(dir)
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	if ck == nil {
		return fmt.Errorf("write checkpoint %s: nil checkpoint", dir)
	}
	state, err := indentState(ck.State)
	if err != nil {
		return fmt.Errorf("write checkpoint %s: %s: %v", dir, StateFile, err)
	}
	model, modelCRC, err := toSafetensors(ck.Model)
	if err != nil {
		return fmt.Errorf("write checkpoint %s: %s: %v", dir, ModelFile, err)
	}
	optim, optimCRC, err := toSafetensors(ck.Optimizer)
	if err != nil {
		return fmt.Errorf("write checkpoint %s: %s: %v", dir, OptimizerFile, err)
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return writeErr(dir, "", err)
	}
	recoverIn(parent, base)

	tmp, err := newSideDir(parent, tmpPrefix, base, true)
	if err != nil {
		return writeErr(dir, "", err)
	}
	crashed := false
	defer func() {
		if !crashed {
			os.RemoveAll(tmp) // after a successful exchange tmp holds the old version
		}
		doneInflight(tmp)
	}()
	stop := func(stage string) bool {
		crashed = wr.faults().crash(stage)
		return crashed
	}
	if stop("tmp-created") {
		return errCrash
	}

	optimMeta := map[string]string{"format": "pt", metaVersion: formatVersion, metaCRC: crcString(optimCRC),
		metaIndexCRC: crcString(indexCRC(plannedIndex(optim)))}
	if err := wr.writeFile(filepath.Join(tmp, OptimizerFile), func(w io.Writer) error {
		return safetensors.Write(w, optim, optimMeta)
	}); err != nil {
		return writeErr(dir, OptimizerFile, err)
	}
	if stop("optimizer-written") {
		return errCrash
	}
	if err := wr.writeFile(filepath.Join(tmp, StateFile), func(w io.Writer) error {
		_, err := w.Write(state)
		return err
	}); err != nil {
		return writeErr(dir, StateFile, err)
	}
	if stop("state-written") {
		return errCrash
	}
	modelMeta := map[string]string{
		"format":     "pt",
		metaVersion:  formatVersion,
		metaSavedAt:  time.Now().UTC().Format(time.RFC3339Nano),
		metaCRC:      crcString(modelCRC),
		metaOptimCRC: crcString(optimCRC),
		metaStateCRC: crcString(crc32.Checksum(state, castagnoli)),
		metaIndexCRC: crcString(indexCRC(plannedIndex(model))),
	}
	if err := wr.writeFile(filepath.Join(tmp, ModelFile), func(w io.Writer) error {
		return safetensors.Write(w, model, modelMeta)
	}); err != nil {
		return writeErr(dir, ModelFile, err)
	}
	if stop("model-written") {
		return errCrash
	}
	if err := syncDir(tmp); err != nil {
		return writeErr(dir, "", err)
	}
	if err := wr.commit(dir, tmp, stop); err != nil {
		if errors.Is(err, errCrash) {
			return err
		}
		return writeErr(dir, "", err)
	}
	return nil
}

// indentState validates the trainer's JSON and indents it; nil becomes {}.
func indentState(s json.RawMessage) ([]byte, error) {
	if len(bytes.TrimSpace(s)) == 0 {
		return []byte("{}\n"), nil
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, s, "", "  "); err != nil {
		return nil, fmt.Errorf("state is not valid JSON: %v", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// toSafetensors converts ts and returns the CRC-32C of the data section the
// writer will emit (every tensor's little-endian bytes, in order).
func toSafetensors(ts []Tensor) ([]safetensors.Tensor, uint32, error) {
	out := make([]safetensors.Tensor, len(ts))
	var crc uint32
	for i, t := range ts {
		if n := numel(t.Shape); n != len(t.Data) {
			return nil, 0, fmt.Errorf("tensor %q: shape %v holds %d elements, data has %d", t.Name, t.Shape, n, len(t.Data))
		}
		data := t.Data
		if data == nil {
			data = []float32{} // F32, not I32, for empty tensors
		}
		out[i] = safetensors.Tensor{Name: t.Name, Shape: t.Shape, F32: data}
		crc = crcFloats(crc, t.Data)
	}
	return out, crc, nil
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// crcFloats extends crc with the little-endian bytes of v.
func crcFloats(crc uint32, v []float32) uint32 {
	var buf [4096]byte
	for len(v) > 0 {
		k := min(len(v), len(buf)/4)
		for i, x := range v[:k] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(x))
		}
		crc = crc32.Update(crc, castagnoli, buf[:4*k])
		v = v[k:]
	}
	return crc
}

func crcString(c uint32) string { return fmt.Sprintf("%08x", c) }

// indexCRC is the CRC-32C of a file's tensor index in data order: each
// tensor's name, dtype, shape and data offsets.
func indexCRC(index []safetensors.Info) uint32 {
	var b []byte
	for _, t := range index {
		b = strconv.AppendQuote(b, t.Name)
		b = append(b, ' ')
		b = append(b, t.DType...)
		for _, d := range t.Shape {
			b = append(b, ' ')
			b = strconv.AppendInt(b, int64(d), 10)
		}
		b = fmt.Appendf(b, " [%d,%d)\n", t.Begin, t.End)
	}
	return crc32.Checksum(b, castagnoli)
}

// plannedIndex is the index safetensors.Write gives ts (all F32 here): the
// tensors in order, back to back.
func plannedIndex(ts []safetensors.Tensor) []safetensors.Info {
	out := make([]safetensors.Info, len(ts))
	var off int64
	for i, t := range ts {
		end := off + 4*int64(len(t.F32))
		out[i] = safetensors.Info{Name: t.Name, DType: "F32", Shape: t.Shape, Begin: off, End: end}
		off = end
	}
	return out
}

// writeFile creates path through the fault seam, fills it and fsyncs it.
func (wr writer) writeFile(path string, fill func(io.Writer) error) error {
	f, err := wr.faults().create(path)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeErr names the file and, for a full disk, says what to do.
func writeErr(dir, file string, err error) error {
	what := dir
	if file != "" {
		what = filepath.Join(dir, file)
	}
	if isNoSpace(err) {
		return fmt.Errorf("write checkpoint %s: %w; the previous checkpoint there (if any) is intact; free disk space, set checkpoint.dir to a disk with more room, or lower checkpoint.keep_last", what, err)
	}
	return fmt.Errorf("write checkpoint %s: %w", what, err)
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// Read loads the checkpoint in dir, verifying every checksum. A directory
// left missing by a crash in the middle of a replace is recovered first.
func Read(dir string) (*Checkpoint, error) {
	return read(dir, nil, nil, true, true)
}

// ReadExpect is Read plus a check that model.safetensors and
// optimizer.safetensors hold exactly the named tensors with the given shapes
// (nil map: that file is not checked). Every mismatch is listed; nothing is
// loaded when any is found.
func ReadExpect(dir string, model, optimizer map[string][]int) (*Checkpoint, error) {
	return read(dir, model, optimizer, true, true)
}

// Verify reads dir as Read does, checksums included, without keeping the
// tensors (one tensor in memory at a time).
func Verify(dir string) error {
	_, err := read(dir, nil, nil, false, true)
	return err
}

// read loads (keep) or checks dir; recover first finishes or undoes an
// interrupted write of it (see Manager.ReadOnly for when not to).
func read(dir string, wantModel, wantOptim map[string][]int, keep, recover bool) (*Checkpoint, error) {
	dir = filepath.Clean(dir)
	if recover {
		recoverIn(filepath.Dir(dir), filepath.Base(dir))
	}
	fail := func(file string, format string, args ...any) error {
		where := dir
		if file != "" {
			where = filepath.Join(dir, file)
		}
		return fmt.Errorf("read checkpoint %s: %s", where, fmt.Sprintf(format, args...))
	}
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fail("", "no such checkpoint directory; check the path (a run's checkpoints are under <out>/checkpoints)")
		}
		return nil, fail("", "%v", err)
	}
	if !st.IsDir() {
		return nil, fail("", "not a directory")
	}
	const damaged = "the file is damaged (interrupted copy or disk error); resume from another checkpoint"
	open := func(name string, keys []string) (*safetensors.File, error) {
		f, err := safetensors.Open(filepath.Join(dir, name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fail(name, "missing; the checkpoint is incomplete, resume from another one")
			}
			return nil, fail(name, "%v; %s", err, damaged)
		}
		if err := checkManifest(f, keys); err != nil {
			f.Close()
			return nil, fail(name, "%v", err)
		}
		return f, nil
	}
	mf, err := open(ModelFile, modelMetaKeys)
	if err != nil {
		return nil, err
	}
	defer mf.Close()
	of, err := open(OptimizerFile, optimMetaKeys)
	if err != nil {
		return nil, err
	}
	defer of.Close()
	state, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fail(StateFile, "missing; the checkpoint is incomplete, resume from another one")
		}
		return nil, fail(StateFile, "%v", err)
	}
	if !json.Valid(state) {
		var v any
		jerr := json.Unmarshal(state, &v)
		return nil, fail(StateFile, "not valid JSON (%v); %s", jerr, damaged)
	}
	if got, want := crcString(crc32.Checksum(state, castagnoli)), mf.Metadata[metaStateCRC]; got != want {
		return nil, fail(StateFile, "checksum %s does not match %s's manifest (%s): the file was edited, damaged, or comes from another save", got, ModelFile, want)
	}
	if got, want := mf.Metadata[metaOptimCRC], of.Metadata[metaCRC]; got != want {
		return nil, fail(OptimizerFile, "checksum %s does not match %s's manifest (%s): the file comes from another save", want, ModelFile, got)
	}
	if wantModel != nil {
		if err := refuseLegacyTargets(mf, dir, wantModel); err != nil {
			return nil, err
		}
	}
	var problems []string
	problems = append(problems, expect(mf, ModelFile, wantModel)...)
	problems = append(problems, expect(of, OptimizerFile, wantOptim)...)
	if len(problems) > 0 {
		return nil, fmt.Errorf("read checkpoint %s: checkpoint was written by a different model config; use a matching --config or start a new --out:\n  %s",
			dir, strings.Join(problems, "\n  "))
	}
	ck := &Checkpoint{State: state}
	if ck.Model, err = readTensors(mf, keep); err != nil {
		return nil, fail(ModelFile, "%v; %s", err, damaged)
	}
	if ck.Optimizer, err = readTensors(of, keep); err != nil {
		return nil, fail(OptimizerFile, "%v; %s", err, damaged)
	}
	if !keep {
		return nil, nil
	}
	return ck, nil
}

// checkManifest checks f's format version, that its metadata holds exactly
// the manifest keys (keys, plus metaIndexCRC from format 2 on) and, from
// format 2 on, its tensor index against the index checksum.
func checkManifest(f *safetensors.File, keys []string) error {
	const damaged = "the file is damaged (interrupted copy or disk error); resume from another checkpoint"
	v := f.Metadata[metaVersion]
	switch v {
	case formatVersion:
		keys = append(slices.Clone(keys), metaIndexCRC)
	case legacyFormat:
	default:
		return fmt.Errorf("metadata %s = %q, want %q: not a checkpoint written by this program's checkpoint format", metaVersion, v, formatVersion)
	}
	for _, k := range keys {
		if _, ok := f.Metadata[k]; !ok {
			return fmt.Errorf("manifest of format %s lacks %s; %s", v, k, damaged)
		}
	}
	if len(f.Metadata) != len(keys) {
		for k := range f.Metadata {
			if !slices.Contains(keys, k) {
				return fmt.Errorf("manifest of format %s has an unknown key %q; %s", v, k, damaged)
			}
		}
	}
	if v == legacyFormat {
		return nil
	}
	if got, want := crcString(indexCRC(f.Tensors())), f.Metadata[metaIndexCRC]; got != want {
		return fmt.Errorf("tensor index (names, shapes, offsets) checksum %s, manifest says %s; %s", got, want, damaged)
	}
	return nil
}

// LegacyTargetPrefix names the EMA copies of the level heads that
// checkpoints held before H-JEPA's targets became parameter-free.
const LegacyTargetPrefix = "target.heads."

// refuseLegacyTargets explains a checkpoint written before the targets became
// parameter-free (its level heads had EMA copies, target.heads.*): their
// trained heads were part of the loss the checkpoint's encoders learned
// under, so neither resuming nor reading it as today's model is meaningful.
func refuseLegacyTargets(f *safetensors.File, dir string, want map[string][]int) error {
	for _, t := range f.Tensors() {
		if _, ok := want[t.Name]; !ok && strings.HasPrefix(t.Name, LegacyTargetPrefix) {
			return fmt.Errorf("read checkpoint %s: it was written by an earlier hjepa whose H-JEPA targets had trained heads (%s holds %q); "+
				"this version's targets are parameter-free (LayerNorm of the target encoder, DESIGN.md section 4), so it cannot resume or evaluate that checkpoint: "+
				"train a new run (choose another --out), or use the hjepa version recorded in its state.json to evaluate it",
				dir, ModelFile, t.Name)
		}
	}
	return nil
}

// expect lists every difference between f's tensors and want.
func expect(f *safetensors.File, file string, want map[string][]int) []string {
	var out []string
	for _, t := range f.Tensors() {
		if t.DType != "F32" {
			out = append(out, fmt.Sprintf("%s: tensor %q has dtype %s, want F32", file, t.Name, t.DType))
		}
	}
	if want == nil {
		return out
	}
	for _, t := range f.Tensors() {
		shape, ok := want[t.Name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: unexpected tensor %q %v", file, t.Name, t.Shape))
		case !slices.Equal(shape, t.Shape):
			out = append(out, fmt.Sprintf("%s: tensor %q has shape %v, want %v", file, t.Name, t.Shape, shape))
		}
	}
	var missing []string
	for name := range want {
		if _, ok := f.Info(name); !ok {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	for _, name := range missing {
		out = append(out, fmt.Sprintf("%s: missing tensor %q %v", file, name, want[name]))
	}
	return out
}

// readTensors reads every tensor in data order and checks the file's CRC.
func readTensors(f *safetensors.File, keep bool) ([]Tensor, error) {
	var out []Tensor
	var crc uint32
	for _, info := range f.Tensors() {
		data, shape, err := f.Float32(info.Name)
		if err != nil {
			return nil, err
		}
		crc = crcFloats(crc, data)
		if keep {
			out = append(out, Tensor{Name: info.Name, Shape: shape, Data: data})
		}
	}
	if got, want := crcString(crc), f.Metadata[metaCRC]; got != want {
		return nil, fmt.Errorf("tensor data checksum %s, manifest says %s", got, want)
	}
	return out, nil
}

// savedAt returns the save time recorded in dir's model file (zero if unreadable).
func savedAt(dir string) time.Time {
	f, err := safetensors.Open(filepath.Join(dir, ModelFile))
	if err != nil {
		return time.Time{}
	}
	defer f.Close()
	t, _ := time.Parse(time.RFC3339Nano, f.Metadata[metaSavedAt])
	return t
}

// EstimateBytes is the disk space ck takes once written (headers, data, state,
// and a filesystem block of slack per file).
func EstimateBytes(ck *Checkpoint) int64 {
	var floats int64
	var tensors int
	names := 0
	for _, ts := range [][]Tensor{ck.Model, ck.Optimizer} {
		for _, t := range ts {
			floats += int64(len(t.Data))
			names += len(t.Name)
			tensors++
		}
	}
	return EstimateBytesFor(floats, tensors, names) + int64(len(ck.State))*2
}

// EstimateBytesFor estimates a checkpoint of floats float32 values spread over
// tensors tensors whose names total nameBytes bytes, before any exist.
func EstimateBytesFor(floats int64, tensors, nameBytes int) int64 {
	const perTensor = 96 // header entry besides the name
	const perFile = 4096 + 512
	return 4*floats + int64(tensors*perTensor+nameBytes) + 3*perFile + 64<<10 // 64 KiB for state.json
}

// parseInt parses a non-negative decimal without sign or leading zeros.
func parseInt(s string) (int, bool) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
