package tfevents

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// The test reader below is written from the TFRecord and proto definitions,
// independently of the writer's helpers.

// readRecords splits a TFRecord stream and checks both CRCs of every record.
func readRecords(b []byte) ([][]byte, error) {
	mask := func(p []byte) uint32 {
		c := crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli))
		return ((c >> 15) | (c << 17)) + 0xa282ead8
	}
	var out [][]byte
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			return out, fmt.Errorf("record %d: truncated header", len(out))
		}
		n := binary.LittleEndian.Uint64(b[off:])
		if got, want := binary.LittleEndian.Uint32(b[off+8:]), mask(b[off:off+8]); got != want {
			return out, fmt.Errorf("record %d: length crc %#x, want %#x", len(out), got, want)
		}
		off += 12
		if uint64(len(b)-off) < n+4 {
			return out, fmt.Errorf("record %d: truncated data", len(out))
		}
		data := b[off : off+int(n)]
		off += int(n)
		if got, want := binary.LittleEndian.Uint32(b[off:]), mask(data); got != want {
			return out, fmt.Errorf("record %d: data crc %#x, want %#x", len(out), got, want)
		}
		off += 4
		out = append(out, data)
	}
	return out, nil
}

type fieldVal struct {
	num protowire.Number
	typ protowire.Type
	v   uint64 // varint, fixed32, fixed64
	b   []byte // bytes
}

// fields decodes one message level.
func fields(t *testing.T, b []byte) []fieldVal {
	t.Helper()
	var out []fieldVal
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := fieldVal{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.Fixed64Type:
			f.v, n = protowire.ConsumeFixed64(b)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			t.Fatalf("unexpected wire type %d", typ)
		}
		if n < 0 {
			t.Fatalf("bad field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		out = append(out, f)
	}
	return out
}

type testValue struct {
	tag       string
	simple    float32
	hasSimple bool
	plugin    string
	content   []byte
	hasTensor bool
}

type testEvent struct {
	wall        float64
	step        int64
	fileVersion string
	values      []testValue
}

func decodeEvent(t *testing.T, b []byte) testEvent {
	t.Helper()
	var e testEvent
	for _, f := range fields(t, b) {
		switch f.num {
		case 1:
			e.wall = math.Float64frombits(f.v)
		case 2:
			e.step = int64(f.v)
		case 3:
			e.fileVersion = string(f.b)
		case 5:
			for _, sv := range fields(t, f.b) {
				if sv.num != 1 {
					t.Fatalf("Summary field %d", sv.num)
				}
				var v testValue
				for _, vf := range fields(t, sv.b) {
					switch vf.num {
					case 1:
						v.tag = string(vf.b)
					case 2:
						v.simple, v.hasSimple = math.Float32frombits(uint32(vf.v)), true
					case 8:
						v.hasTensor = true
					case 9:
						for _, pd := range fields(t, vf.b) { // SummaryMetadata
							if pd.num != 1 {
								continue
							}
							for _, pf := range fields(t, pd.b) { // PluginData
								switch pf.num {
								case 1:
									v.plugin = string(pf.b)
								case 2:
									v.content = pf.b
								}
							}
						}
					}
				}
				e.values = append(e.values, v)
			}
		}
	}
	return e
}

func readEvents(t *testing.T, path string) []testEvent {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	var evs []testEvent
	for _, r := range recs {
		evs = append(evs, decodeEvent(t, r))
	}
	return evs
}

func fixedClock() func() time.Time {
	t := time.Unix(1700000000, 250_000_000)
	return func() time.Time { return t }
}

func newTestWriter(t *testing.T, opts ...Option) *Writer {
	t.Helper()
	opts = append([]Option{WithClock(fixedClock()), WithHostname("testhost"), WithFlushInterval(0)}, opts...)
	w, err := NewWriter(filepath.Join(t.TempDir(), "logs", "tensorboard"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestMaskedCRCKnownValue(t *testing.T) {
	// CRC32C("123456789") = 0xe3069283 is the standard check value.
	c := uint32(0xe3069283)
	want := ((c >> 15) | (c << 17)) + 0xa282ead8
	if got := MaskedCRC([]byte("123456789")); got != want {
		t.Fatalf("MaskedCRC = %#x, want %#x", got, want)
	}
}

func TestScalarsRoundTrip(t *testing.T) {
	w := newTestWriter(t)
	name := filepath.Base(w.Path())
	pat := fmt.Sprintf(`^events\.out\.tfevents\.1700000000\.testhost\.%d\.\d+$`, os.Getpid())
	if !regexp.MustCompile(pat).MatchString(name) {
		t.Fatalf("file name %q does not match %s", name, pat)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Scalar("train/loss", 1, 0.5))
	must(w.Scalars(2, map[string]float64{"train/lr": 1e-4, "train/loss": 0.25, "train/loss_l0": 0.125}))
	must(w.ScalarList(3, []TagValue{{"b", 3}, {"a", math.NaN()}}))
	must(w.Scalar("big_step", 1<<40, -7.5))
	must(w.Close())
	must(w.Close()) // idempotent
	if err := w.Scalar("x", 4, 1); err == nil {
		t.Fatal("write after Close succeeded")
	}

	evs := readEvents(t, w.Path())
	if len(evs) != 5 {
		t.Fatalf("got %d events, want 5", len(evs))
	}
	if evs[0].fileVersion != "brain.Event:2" || len(evs[0].values) != 0 {
		t.Fatalf("first event = %+v, want file_version brain.Event:2", evs[0])
	}
	if evs[0].wall != 1700000000.25 {
		t.Fatalf("wall_time = %v", evs[0].wall)
	}
	type tv struct {
		tag string
		v   float32
	}
	want := []struct {
		step int64
		vals []tv
	}{
		{1, []tv{{"train/loss", 0.5}}},
		{2, []tv{{"train/loss", 0.25}, {"train/loss_l0", 0.125}, {"train/lr", float32(1e-4)}}},
		{3, []tv{{"b", 3}, {"a", float32(math.NaN())}}},
		{1 << 40, []tv{{"big_step", -7.5}}},
	}
	for i, w := range want {
		e := evs[i+1]
		if e.step != w.step || len(e.values) != len(w.vals) {
			t.Fatalf("event %d: step %d with %d values, want step %d with %d", i+1, e.step, len(e.values), w.step, len(w.vals))
		}
		for j, v := range w.vals {
			got := e.values[j]
			same := got.simple == v.v || (math.IsNaN(float64(got.simple)) && math.IsNaN(float64(v.v)))
			if got.tag != v.tag || !got.hasSimple || !same {
				t.Errorf("event %d value %d = %+v, want %s=%v", i+1, j, got, v.tag, v.v)
			}
		}
	}
}

func TestCorruptByteIsDetected(t *testing.T) {
	w := newTestWriter(t)
	if err := w.Scalars(7, map[string]float64{"loss": 0.3, "lr": 0.001}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readRecords(orig); err != nil {
		t.Fatalf("clean file: %v", err)
	}
	// Every single-byte corruption anywhere in the file must be caught by a
	// CRC (or, for a length byte, by the length CRC or truncation).
	for i := range orig {
		bad := append([]byte(nil), orig...)
		bad[i] ^= 0x01
		if _, err := readRecords(bad); err == nil {
			t.Fatalf("flipping a bit of byte %d went undetected", i)
		}
	}
	// A truncated file is reported too.
	if _, err := readRecords(orig[:len(orig)-1]); err == nil {
		t.Fatal("truncation went undetected")
	}
}

type decodedHParams struct {
	values      map[string]any
	types       map[string]uint64
	metricTags  []string
	startTime   float64
	hasStart    bool
	hasExp      bool
	endStatus   uint64
	hasEnd      bool
	version     uint64
	versionSeen bool
}

func decodeHParamsContent(t *testing.T, content []byte, d *decodedHParams) {
	t.Helper()
	for _, f := range fields(t, content) {
		switch f.num {
		case 1:
			d.version, d.versionSeen = f.v, true
		case 2: // Experiment
			d.hasExp = true
			for _, ef := range fields(t, f.b) {
				switch ef.num {
				case 4: // HParamInfo
					var name string
					var typ uint64
					for _, hf := range fields(t, ef.b) {
						switch hf.num {
						case 1:
							name = string(hf.b)
						case 4:
							typ = hf.v
						}
					}
					d.types[name] = typ
				case 5: // MetricInfo{name: MetricName{tag=2}}
					for _, mf := range fields(t, ef.b) {
						for _, nf := range fields(t, mf.b) {
							if nf.num == 2 {
								d.metricTags = append(d.metricTags, string(nf.b))
							}
						}
					}
				}
			}
		case 3: // SessionStartInfo
			d.hasStart = true
			for _, sf := range fields(t, f.b) {
				switch sf.num {
				case 1: // map entry
					var key string
					var val any
					for _, mf := range fields(t, sf.b) {
						switch mf.num {
						case 1:
							key = string(mf.b)
						case 2: // google.protobuf.Value
							for _, vf := range fields(t, mf.b) {
								switch vf.num {
								case 2:
									val = math.Float64frombits(vf.v)
								case 3:
									val = string(vf.b)
								case 4:
									val = vf.v != 0
								}
							}
						}
					}
					d.values[key] = val
				case 5:
					d.startTime = math.Float64frombits(sf.v)
				}
			}
		case 4: // SessionEndInfo
			d.hasEnd = true
			for _, sf := range fields(t, f.b) {
				if sf.num == 1 {
					d.endStatus = sf.v
				}
			}
		}
	}
}

func TestWriteHParams(t *testing.T) {
	w := newTestWriter(t)
	hp := map[string]any{
		"model.encoder_type":  "vit_tiny",
		"training.lr":         1.5e-3,
		"data.batch_size":     64,
		"model.use_fpn":       false,
		"masking.num_targets": int64(4),
		"loss.vicreg":         true,
		"training.warmup":     2 * time.Second,
	}
	metrics := []string{"train/loss", "val/loss", "collapse/rankme"}
	if err := w.WriteHParams(hp, metrics); err != nil {
		t.Fatal(err)
	}
	if err := w.EndHParamsSession(true, 100); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	evs := readEvents(t, w.Path())
	if len(evs) != 4 {
		t.Fatalf("got %d events, want 4", len(evs))
	}
	d := decodedHParams{values: map[string]any{}, types: map[string]uint64{}}
	wantTags := []string{"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
	for i, tag := range wantTags {
		vals := evs[i+1].values
		if len(vals) != 1 || vals[0].tag != tag || vals[0].plugin != "hparams" || !vals[0].hasTensor || vals[0].hasSimple {
			t.Fatalf("event %d = %+v, want one hparams plugin value tagged %s", i+1, evs[i+1], tag)
		}
		decodeHParamsContent(t, vals[0].content, &d)
	}
	if !d.hasExp || !d.hasStart || !d.hasEnd {
		t.Fatalf("missing parts: %+v", d)
	}
	if d.versionSeen && d.version != 0 {
		t.Fatalf("plugin data version %d, want 0", d.version)
	}
	wantVals := map[string]any{
		"model.encoder_type":  "vit_tiny",
		"training.lr":         1.5e-3,
		"data.batch_size":     64.0,
		"model.use_fpn":       false,
		"masking.num_targets": 4.0,
		"loss.vicreg":         true,
		"training.warmup":     "2s",
	}
	wantTypes := map[string]uint64{ // DATA_TYPE_STRING=1, BOOL=2, FLOAT64=3
		"model.encoder_type": 1, "training.lr": 3, "data.batch_size": 3, "model.use_fpn": 2,
		"masking.num_targets": 3, "loss.vicreg": 2, "training.warmup": 1,
	}
	for k, v := range wantVals {
		if d.values[k] != v {
			t.Errorf("hparam %s = %#v, want %#v", k, d.values[k], v)
		}
		if d.types[k] != wantTypes[k] {
			t.Errorf("hparam %s type %d, want %d", k, d.types[k], wantTypes[k])
		}
	}
	if len(d.values) != len(wantVals) || len(d.types) != len(wantVals) {
		t.Errorf("got %d values and %d infos, want %d", len(d.values), len(d.types), len(wantVals))
	}
	if fmt.Sprint(d.metricTags) != fmt.Sprint(metrics) {
		t.Errorf("metric tags %v, want %v", d.metricTags, metrics)
	}
	if d.startTime != 1700000000.25 {
		t.Errorf("start time %v", d.startTime)
	}
	if d.endStatus != 1 {
		t.Errorf("end status %d, want STATUS_SUCCESS", d.endStatus)
	}
}

func TestWriteHParamsRejectsUnsupportedType(t *testing.T) {
	w := newTestWriter(t)
	defer w.Close()
	err := w.WriteHParams(map[string]any{"model.levels": []int{1, 2}}, nil)
	if err == nil || !regexp.MustCompile(`model\.levels.*\[\]int`).MatchString(err.Error()) {
		t.Fatalf("err = %v, want one naming the key and the type", err)
	}
}

func TestPeriodicFlush(t *testing.T) {
	w := newTestWriter(t, WithFlushInterval(5*time.Millisecond))
	defer w.Close()
	st, err := os.Stat(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	before := st.Size()
	if err := w.Scalar("loss", 1, 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := os.Stat(w.Path())
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > before {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("buffered event never reached the file without Flush")
}

func TestBufferedUntilFlush(t *testing.T) {
	w := newTestWriter(t)
	defer w.Close()
	if err := w.Scalar("loss", 1, 1); err != nil {
		t.Fatal(err)
	}
	if n := len(readEvents(t, w.Path())); n != 1 {
		t.Fatalf("%d events on disk before Flush, want 1 (file_version only)", n)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(readEvents(t, w.Path())); n != 2 {
		t.Fatalf("%d events on disk after Flush, want 2", n)
	}
}

func TestNewWriterBadDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := NewWriter(filepath.Join(file, "tb"))
	if err == nil || !errors.Is(err, os.ErrExist) && !regexp.MustCompile(`not a directory`).MatchString(err.Error()) {
		t.Fatalf("err = %v, want a not-a-directory error", err)
	}
}

func TestUniqueFileNames(t *testing.T) {
	dir := t.TempDir()
	seen := map[string]bool{}
	for range 3 {
		w, err := NewWriter(dir, WithClock(fixedClock()), WithFlushInterval(0))
		if err != nil {
			t.Fatal(err)
		}
		if seen[w.Path()] {
			t.Fatalf("duplicate file %s", w.Path())
		}
		seen[w.Path()] = true
		w.Close()
	}
}
