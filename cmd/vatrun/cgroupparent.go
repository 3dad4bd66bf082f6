package main

import (
	"flag"
	"os"
)

// cgroupParentEnv sets the default of --cgroup-parent for run, check and kernel. It is read here
// only: the library packages (cgroup, launcher, hostfacts) take the parent as an option, where ""
// means this process's own cgroup.
const cgroupParentEnv = "VATRUN_CGROUP_PARENT"

// cgroupParentFlag defines --cgroup-parent on fs: the cgroup v2 parent of the workers' leaves,
// $VATRUN_CGROUP_PARENT unless given, else "" (vatrun's own cgroup). what says what it is for.
func cgroupParentFlag(fs *flag.FlagSet, what string) *string {
	return fs.String("cgroup-parent", os.Getenv(cgroupParentEnv),
		what+" (default: $"+cgroupParentEnv+", else vatrun's own cgroup)")
}
