package worker

import (
	"fmt"

	"go.uber.org/zap"

	"github.com/hjepa-go/hjepa/device"
	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// discoverDevices lists this host's GPUs for the coordinator; none is not
// an error.
func discoverDevices(log *zap.Logger) []*hjepav1.Device {
	inv, err := device.Discover()
	if err != nil {
		// device.OpenLocal says it once, in one line, when device auto
		// falls back to the CPU.
		log.Debug("no GPU found", zap.String("why", err.Error()))
		return nil
	}
	var out []*hjepav1.Device
	for _, g := range inv.GPUs {
		out = append(out, &hjepav1.Device{Index: int32(g.Index), Name: g.Name, Uuid: g.UUID,
			MemoryBytes: g.MemoryBytes, ComputeCapability: fmt.Sprintf("%d.%d", g.Major, g.Minor)})
	}
	log.Info("devices", zap.Int("gpus", len(out)), zap.String("source", inv.Source))
	return out
}
