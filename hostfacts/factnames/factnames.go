// Package factnames lists the host facts hostfacts gathers: their names, whether each can
// change a worker's outcome, and why. It reads nothing and needs no cgo, so the profile package
// can check the facts a profile pins without linking libseccomp.
package factnames

import "slices"

// Fact names.
const (
	KernelRelease       = "kernel.release"
	KernelArch          = "kernel.arch"
	LibseccompVersion   = "libseccomp.version"
	SeccompActions      = "seccomp.actions"
	SeccompFlags        = "seccomp.filterFlags"
	CgroupMode          = "cgroup.mode"
	CgroupControllers   = "cgroup.controllers"
	CgroupKill          = "cgroup.kill"
	CgroupMemoryPeak    = "cgroup.memoryPeak"
	CgroupOOMGroup      = "cgroup.memoryOomGroup"
	CgroupEventsLocal   = "cgroup.memoryEventsLocal"
	CgroupPidsPeak      = "cgroup.pidsPeak"
	CgroupSwapAccount   = "cgroup.swapAccounting"
	VMOvercommit        = "vm.overcommit_memory"
	SwapPresent         = "swap.present"
	TransparentHugepage = "mm.transparentHugepage"
	PageSize            = "mm.pageSize"
	CPUMathFeatures     = "cpu.mathFeatures"
	CPUModel            = "cpu.model"
	CPUCount            = "cpu.count"
)

// Spec is one fact: its name, whether it can change a worker's outcome, and why.
type Spec struct {
	Name     string
	Relevant bool
	Why      string
}

// specs lists every fact, in display order.
var specs = []Spec{
	{KernelRelease, true, "syscalls that exist (newer ones get ENOSYS from the filter), memory accounting and OOM behaviour change between kernels"},
	{KernelArch, true, "the seccomp filter's architecture and syscall numbers; the worker binary itself"},
	{LibseccompVersion, true, "compiles the profile's filter: a syscall name an older libseccomp does not know is dropped (a warning), so the same profile can give a different filter"},
	{SeccompActions, true, "actions the kernel can take (kill_process missing: a violation kills one thread, not the worker)"},
	{SeccompFlags, false, "filter flags the kernel accepts; vatrun loads the worker's filter without flags (new_listener is for profile learn)"},
	{CgroupMode, true, "without a unified cgroup v2 there is no memory.max, no evidence: a SIGKILL is 'killed', never 'oom-limit', and memory binds as RLIMIT_DATA"},
	{CgroupControllers, true, "memory, pids and cpu enforce the profile's limits; a missing one leaves that limit to rlimits or nothing"},
	{CgroupKill, true, "cgroup.kill stops the worker and everything it started at once; without it vatrun kills the init stage"},
	{CgroupMemoryPeak, true, "memory.peak is the report's peakMemory evidence (Linux 5.19+)"},
	{CgroupOOMGroup, true, "memory.oom.group: an OOM kills the whole leaf, not one process"},
	{CgroupEventsLocal, true, "memory.events.local separates the leaf's own OOM from a parent's (oom-limit vs oom-host)"},
	{CgroupPidsPeak, true, "pids.peak is the report's pidsPeak evidence"},
	{CgroupSwapAccount, true, "memory.swap.max exists only with swap accounting: without it the profile's swap limit does not hold and a worker may swap where another is OOM-killed"},
	{VMOvercommit, true, "decides whether a large allocation fails inside the engine (a deterministic meter exit) or succeeds and is later OOM-killed (resource exhaustion)"},
	{SwapPresent, true, "with swap (and no swap accounting) memory pressure slows a worker instead of killing it"},
	{TransparentHugepage, true, "huge pages charge memory in 2 MiB steps, so the memory limit is reached at a different point"},
	{PageSize, true, "memory is charged and mapped in pages: limits, RLIMIT_DATA and mmap rounding depend on it"},
	{CPUMathFeatures, true, "glibc's libm picks FMA/AVX2 code for exp, log, pow, sin… by these flags: a worker that links libm dynamically may round differently"},
	{CPUModel, false, "speed only: how long a delivery takes (cpu.max throttling, the kernel's timeouts), not its result"},
	{CPUCount, false, "speed only: the worker is single-threaded and bounded by cpu.max"},
}

// Names lists every fact name, in display order.
func Names() []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

// Known says whether name is a fact hostfacts gathers.
func Known(name string) bool {
	return slices.ContainsFunc(specs, func(s Spec) bool { return s.Name == name })
}

// Relevant says whether the fact called name can change a worker's outcome (false when unknown).
func Relevant(name string) bool {
	for _, s := range specs {
		if s.Name == name {
			return s.Relevant
		}
	}
	return false
}

// Specs lists every fact, in display order.
func Specs() []Spec { return slices.Clone(specs) }
