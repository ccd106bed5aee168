//go:build nocuda

package worker

import (
	"go.uber.org/zap"

	hjepav1 "github.com/hjepa-go/hjepa/proto/hjepa/v1"
)

// discoverDevices: a build without the CUDA backend trains on the CPU.
func discoverDevices(log *zap.Logger) []*hjepav1.Device {
	log.Info("built without CUDA (-tags nocuda): training runs on the CPU")
	return nil
}
