//go:build !nocuda

package worker

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/cuda"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// discoverDevices lists this host's GPUs for the coordinator (NVML in cgo
// builds, the driver API in static ones); none is not an error.
func discoverDevices(log *zap.Logger) []*hjepav1.Device {
	d, err := cuda.Discover()
	if err != nil {
		log.Info("no GPU found; training runs on the CPU", zap.String("why", err.Error()))
		return nil
	}
	var out []*hjepav1.Device
	for _, dev := range d.Devices {
		out = append(out, &hjepav1.Device{Index: int32(dev.Index), Name: dev.Name, Uuid: dev.UUID,
			MemoryBytes: dev.TotalMemory, ComputeCapability: fmt.Sprintf("%d.%d", dev.Major, dev.Minor)})
	}
	log.Info("devices", zap.Int("gpus", len(out)), zap.String("source", d.Source))
	return out
}
