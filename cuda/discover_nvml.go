//go:build cgo

package cuda

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

const nvmlBuilt = true

// discoverNVML lists devices through NVML. Every NVML call happens after a
// successful nvml.Init, which fails cleanly (ERROR_LIBRARY_NOT_FOUND) where
// libnvidia-ml.so.1 is absent.
func discoverNVML() (Discovery, error) {
	if ret := nvml.Init(); ret != nvml.SUCCESS {
		return Discovery{}, fmt.Errorf("NVML unavailable: %s (libnvidia-ml.so.1 comes with the NVIDIA driver)", nvml.ErrorString(ret))
	}
	defer nvml.Shutdown()
	out := Discovery{Source: "nvml"}
	if v, ret := nvml.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		out.Driver = v
	}
	n, ret := nvml.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return Discovery{}, fmt.Errorf("nvmlDeviceGetCount: %s", nvml.ErrorString(ret))
	}
	for i := 0; i < n; i++ {
		dev, ret := nvml.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return Discovery{}, fmt.Errorf("nvmlDeviceGetHandleByIndex(%d): %s", i, nvml.ErrorString(ret))
		}
		info := DeviceInfo{Index: i}
		if info.Name, ret = dev.GetName(); ret != nvml.SUCCESS {
			return Discovery{}, fmt.Errorf("nvmlDeviceGetName(%d): %s", i, nvml.ErrorString(ret))
		}
		if info.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
			return Discovery{}, fmt.Errorf("nvmlDeviceGetUUID(%d): %s", i, nvml.ErrorString(ret))
		}
		mem, ret := dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return Discovery{}, fmt.Errorf("nvmlDeviceGetMemoryInfo(%d): %s", i, nvml.ErrorString(ret))
		}
		info.TotalMemory = mem.Total
		if info.Major, info.Minor, ret = dev.GetCudaComputeCapability(); ret != nvml.SUCCESS {
			return Discovery{}, fmt.Errorf("nvmlDeviceGetCudaComputeCapability(%d): %s", i, nvml.ErrorString(ret))
		}
		out.Devices = append(out.Devices, info)
	}
	return out, nil
}
