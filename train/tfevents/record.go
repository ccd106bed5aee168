// Package tfevents writes TensorBoard event files without TensorFlow: Event
// protobufs (tensorflow/core/util/event.proto) encoded by hand with protowire,
// framed as TFRecords, in files named events.out.tfevents.<time>.<host>.<pid>.<n>.
// Scalars use Summary.Value.simple_value, which every TensorBoard version
// reads; hyperparameters use the hparams plugin's session_start_info and
// experiment summaries (tensorboard/plugins/hparams/plugin_data.proto).
package tfevents

import (
	"encoding/binary"
	"hash/crc32"
	"io"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaskedCRC is TFRecord's masked CRC32C: the CRC rotated right by 15 bits plus
// a constant, so that a CRC of data that itself holds CRCs stays well mixed.
func MaskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}

// appendRecord frames data as one TFRecord:
//
//	uint64 length (LE) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
func appendRecord(dst, data []byte) []byte {
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[8:], MaskedCRC(hdr[:8]))
	dst = append(dst, hdr[:]...)
	dst = append(dst, data...)
	return binary.LittleEndian.AppendUint32(dst, MaskedCRC(data))
}

// writeRecord writes one framed record to w.
func writeRecord(w io.Writer, data []byte) error {
	_, err := w.Write(appendRecord(make([]byte, 0, len(data)+16), data))
	return err
}
