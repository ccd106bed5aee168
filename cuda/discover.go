package cuda

import (
	"errors"
	"fmt"
)

// DeviceInfo describes one GPU.
type DeviceInfo struct {
	Index        int    // CUDA ordinal (NVML index when found through NVML)
	Name         string // e.g. "NVIDIA H100 80GB HBM3"
	UUID         string // "GPU-xxxxxxxx-xxxx-..."
	TotalMemory  uint64 // bytes
	Major, Minor int    // compute capability
}

func (d DeviceInfo) String() string {
	return fmt.Sprintf("cuda:%d %s (%s, sm_%d%d, %.1f GiB)", d.Index, d.Name, d.UUID, d.Major, d.Minor, float64(d.TotalMemory)/(1<<30))
}

// Discovery is what Discover found, and through which library.
type Discovery struct {
	Devices []DeviceInfo
	// Source is "nvml" or "cuda-driver".
	Source string
	// Driver is the driver version NVML or libcuda reported ("" if unknown).
	Driver string
}

// Discover lists the GPUs. Builds with cgo ask NVML (github.com/NVIDIA/go-nvml,
// every call after a successful nvmlInit); static builds (CGO_ENABLED=0, which
// go-nvml cannot be built for) ask the CUDA driver API through purego. Both
// load their library at run time and return an error that says what is
// missing on a machine without an NVIDIA driver; zero devices is not an error.
func Discover() (Discovery, error) {
	if d, err := discoverNVML(); err == nil || !nvmlBuilt {
		return d, err
	} else if drv, derr := discoverDriver(""); derr == nil {
		return drv, nil
	} else {
		return Discovery{}, fmt.Errorf("%w; %w", err, derr)
	}
}

// discoverDriver lists devices through libcuda.
func discoverDriver(libPath string) (Discovery, error) {
	cu, err := loadLibCUDA(libPath)
	if err != nil {
		if errors.Is(err, ErrNoDevice) {
			return Discovery{Source: "cuda-driver", Driver: "CUDA " + versionString(cu.driverVersion)}, nil
		}
		return Discovery{}, err
	}
	var n int32
	if err := cu.check("cuDeviceGetCount", cu.cuDeviceGetCount(&n)); err != nil {
		return Discovery{}, err
	}
	out := Discovery{Source: "cuda-driver", Driver: "CUDA " + versionString(cu.driverVersion)}
	for i := int32(0); i < n; i++ {
		var dev int32
		if err := cu.check("cuDeviceGet", cu.cuDeviceGet(&dev, i)); err != nil {
			return Discovery{}, err
		}
		info, err := cu.deviceInfo(dev)
		if err != nil {
			return Discovery{}, err
		}
		info.Index = int(i)
		out.Devices = append(out.Devices, info)
	}
	return out, nil
}

// deviceInfo reads one device's name, UUID, memory and compute capability.
func (l *libCUDA) deviceInfo(dev int32) (DeviceInfo, error) {
	var info DeviceInfo
	name := make([]byte, 256)
	if err := l.check("cuDeviceGetName", l.cuDeviceGetName(&name[0], int32(len(name)), dev)); err != nil {
		return info, err
	}
	info.Name = cString(&name[0])
	var uuid [16]byte
	if err := l.check("cuDeviceGetUuid", l.cuDeviceGetUuid(&uuid, dev)); err != nil {
		return info, err
	}
	info.UUID = formatUUID(uuid)
	if err := l.check("cuDeviceTotalMem", l.cuDeviceTotalMem(&info.TotalMemory, dev)); err != nil {
		return info, err
	}
	var major, minor int32
	if err := l.check("cuDeviceGetAttribute", l.cuDeviceGetAttribute(&major, attrComputeCapabilityMajor, dev)); err != nil {
		return info, err
	}
	if err := l.check("cuDeviceGetAttribute", l.cuDeviceGetAttribute(&minor, attrComputeCapabilityMinor, dev)); err != nil {
		return info, err
	}
	info.Major, info.Minor = int(major), int(minor)
	return info, nil
}

// formatUUID writes a CUuuid as nvidia-smi does: GPU-8-4-4-4-12 hex digits.
func formatUUID(u [16]byte) string {
	return fmt.Sprintf("GPU-%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
