package jobcmd

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/hjepa-go/hjepa/train"
)

// Version is what `--version` prints for every binary: the release, the
// module version a `go install` recorded (none for a checkout build), the
// commit the binary was built from (with "+modified" for a dirty tree),
// the Go version and the build's CUDA support.
func Version() string {
	v := train.Version
	commit, modified, cuda := "unknown", false, "cuda"
	if train.Commit != "" {
		commit = train.Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				modified = s.Value == "true"
			case "-tags":
				if containsTag(s.Value, "nocuda") {
					cuda = "nocuda"
				}
			}
		}
	}
	if modified {
		commit += "+modified"
	}
	return fmt.Sprintf("%s (commit %s, %s, %s/%s, %s)", v, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH, cuda)
}

func containsTag(tags, tag string) bool { return slices.Contains(strings.Split(tags, ","), tag) }
