// Command hjepa-worker runs one data-parallel worker of a distributed H-JEPA
// job, one per GPU (`hjepa worker` is the same command).
package main

import "github.com/hjepa-go/hjepa/cmd/internal/jobcmd"

func main() { jobcmd.Main(jobcmd.NewWorkerCommand("hjepa-worker")) }
