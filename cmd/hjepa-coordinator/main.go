// Command hjepa-coordinator coordinates a distributed H-JEPA job: ranks,
// ring neighbours, data shards, heartbeats and restarts (`hjepa coordinator`
// is the same command).
package main

import "github.com/hjepa-go/hjepa/cmd/internal/jobcmd"

func main() { jobcmd.Main(jobcmd.NewCoordinatorCommand("hjepa-coordinator")) }
