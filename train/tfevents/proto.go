package tfevents

import (
	"fmt"
	"math"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers, from tensorflow/core/util/event.proto,
// tensorflow/core/framework/summary.proto and tensor.proto,
// tensorboard/plugins/hparams/{plugin_data,api}.proto and
// google/protobuf/struct.proto.
const (
	eventWallTime    = 1 // double
	eventStep        = 2 // int64
	eventFileVersion = 3 // string
	eventSummary     = 5 // Summary

	summaryValue = 1 // repeated Summary.Value

	valueTag         = 1 // string
	valueSimpleValue = 2 // float
	valueTensor      = 8 // TensorProto
	valueMetadata    = 9 // SummaryMetadata

	metadataPluginData = 1 // SummaryMetadata.PluginData
	pluginName         = 1 // string
	pluginContent      = 2 // bytes

	tensorDtype    = 1 // DataType enum
	tensorShape    = 2 // TensorShapeProto
	tensorFloatVal = 5 // repeated float, packed
	dtFloat        = 1 // DT_FLOAT

	hpVersion          = 1 // int32
	hpExperiment       = 2 // Experiment
	hpSessionStartInfo = 3 // SessionStartInfo
	hpSessionEndInfo   = 4 // SessionEndInfo

	ssiHParams       = 1 // map<string, google.protobuf.Value>
	ssiStartTimeSecs = 5 // double

	seiStatus      = 1 // Status enum
	seiEndTimeSecs = 2 // double

	expTimeCreatedSecs = 3 // double
	expHParamInfos     = 4 // repeated HParamInfo
	expMetricInfos     = 5 // repeated MetricInfo

	hparamInfoName = 1 // string
	hparamInfoType = 4 // DataType enum

	metricInfoName = 1 // MetricName
	metricNameTag  = 2 // string

	mapKey   = 1
	mapValue = 2

	structNumberValue = 2 // double
	structStringValue = 3 // string
	structBoolValue   = 4 // bool
)

// hparams DataType enum values (api.proto).
const (
	dataTypeString  = 1
	dataTypeBool    = 2
	dataTypeFloat64 = 3
)

// Session status values (api.proto).
const (
	statusSuccess = 1
	statusFailure = 2
)

// The hparams plugin's tags and plugin name (tensorboard/plugins/hparams/metadata.py).
const (
	hparamsPlugin       = "hparams"
	experimentTag       = "_hparams_/experiment"
	sessionStartInfoTag = "_hparams_/session_start_info"
	sessionEndInfoTag   = "_hparams_/session_end_info"
)

// fileVersion is the first event of every file; readers check it.
const fileVersion = "brain.Event:2"

func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendDouble(b []byte, num protowire.Number, v float64) []byte {
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(v))
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// wallSeconds is t as fractional seconds since the Unix epoch (Event.wall_time).
func wallSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// encodeEvent encodes an Event with either a file_version or a summary.
func encodeEvent(wall time.Time, step int64, fileVer string, summary []byte) []byte {
	b := appendDouble(nil, eventWallTime, wallSeconds(wall))
	b = appendVarint(b, eventStep, uint64(step))
	if fileVer != "" {
		b = appendString(b, eventFileVersion, fileVer)
	}
	if summary != nil {
		b = appendMessage(b, eventSummary, summary)
	}
	return b
}

// appendScalarValue appends one Summary.value{tag, simple_value}.
func appendScalarValue(summary []byte, tag string, v float64) []byte {
	val := appendString(nil, valueTag, tag)
	val = protowire.AppendTag(val, valueSimpleValue, protowire.Fixed32Type)
	val = protowire.AppendFixed32(val, math.Float32bits(float32(v)))
	return appendMessage(summary, summaryValue, val)
}

// nullTensor is the scalar DT_FLOAT 0 that TensorBoard's own hparams
// summaries carry (metadata.NULL_TENSOR), so the tag has a data point.
func nullTensor() []byte {
	b := appendVarint(nil, tensorDtype, dtFloat)
	b = appendMessage(b, tensorShape, nil)
	packed := protowire.AppendFixed32(nil, math.Float32bits(0))
	return appendMessage(b, tensorFloatVal, packed)
}

// pluginSummary is a Summary with one value that carries plugin data and the
// null tensor.
func pluginSummary(tag, plugin string, content []byte) []byte {
	pd := appendString(nil, pluginName, plugin)
	pd = appendMessage(pd, pluginContent, content)
	md := appendMessage(nil, metadataPluginData, pd)

	val := appendString(nil, valueTag, tag)
	val = appendMessage(val, valueTensor, nullTensor())
	val = appendMessage(val, valueMetadata, md)
	return appendMessage(nil, summaryValue, val)
}

// hparamValue converts a Go value to a google.protobuf.Value and its hparams
// DataType.
func hparamValue(v any) (msg []byte, dataType uint64, err error) {
	num := func(f float64) ([]byte, uint64, error) {
		return appendDouble(nil, structNumberValue, f), dataTypeFloat64, nil
	}
	switch x := v.(type) {
	case string:
		return appendString(nil, structStringValue, x), dataTypeString, nil
	case bool:
		b := uint64(0)
		if x {
			b = 1
		}
		return appendVarint(nil, structBoolValue, b), dataTypeBool, nil
	case float64:
		return num(x)
	case float32:
		return num(float64(x))
	case int:
		return num(float64(x))
	case int8:
		return num(float64(x))
	case int16:
		return num(float64(x))
	case int32:
		return num(float64(x))
	case int64:
		return num(float64(x))
	case uint:
		return num(float64(x))
	case uint8:
		return num(float64(x))
	case uint16:
		return num(float64(x))
	case uint32:
		return num(float64(x))
	case uint64:
		return num(float64(x))
	case time.Duration:
		return appendString(nil, structStringValue, x.String()), dataTypeString, nil
	case fmt.Stringer:
		return appendString(nil, structStringValue, x.String()), dataTypeString, nil
	default:
		return nil, 0, fmt.Errorf("type %T is not a string, bool or number", v)
	}
}

// encodeHParams builds the HParamsPluginData contents of the session start
// info and of the experiment, with keys in sorted order.
func encodeHParams(hparams map[string]any, metricTags []string, start time.Time) (ssi, exp []byte, err error) {
	keys := make([]string, 0, len(hparams))
	for k := range hparams {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var startInfo, experiment []byte
	for _, k := range keys {
		val, dt, err := hparamValue(hparams[k])
		if err != nil {
			return nil, nil, fmt.Errorf("hparam %q: %w", k, err)
		}
		entry := appendString(nil, mapKey, k)
		entry = appendMessage(entry, mapValue, val)
		startInfo = appendMessage(startInfo, ssiHParams, entry)

		info := appendString(nil, hparamInfoName, k)
		info = appendVarint(info, hparamInfoType, dt)
		experiment = appendMessage(experiment, expHParamInfos, info)
	}
	startInfo = appendDouble(startInfo, ssiStartTimeSecs, wallSeconds(start))

	experiment = appendDouble(experiment, expTimeCreatedSecs, wallSeconds(start))
	for _, tag := range metricTags {
		name := appendString(nil, metricNameTag, tag)
		experiment = appendMessage(experiment, expMetricInfos, appendMessage(nil, metricInfoName, name))
	}

	// version = 0 is the proto3 default and so is not written.
	ssi = appendMessage(nil, hpSessionStartInfo, startInfo)
	exp = appendMessage(nil, hpExperiment, experiment)
	return ssi, exp, nil
}

// encodeSessionEnd builds the HParamsPluginData of a session end info.
func encodeSessionEnd(ok bool, end time.Time) []byte {
	status := uint64(statusFailure)
	if ok {
		status = statusSuccess
	}
	sei := appendVarint(nil, seiStatus, status)
	sei = appendDouble(sei, seiEndTimeSecs, wallSeconds(end))
	return appendMessage(nil, hpSessionEndInfo, sei)
}
