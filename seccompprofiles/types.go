// Package seccompprofiles defines vatrun's sandbox profile: the JSON format operators write, the
// built-in profiles embedded in the binary, strict validation and the canonical digest that
// validators compare. It needs no cgo: compiling the seccomp section to a BPF program is
// seccompprofiles/filter's job, learning a profile from a worker's syscalls seccompprofiles/learn's.
package seccompprofiles

import specs "github.com/opencontainers/runtime-spec/specs-go"

// Profile is one sandbox description. Two validators whose profiles have the same Digest run
// identical sandboxes. A field absent from the JSON means "default" while parsing; after
// Parse/Load every default is filled in, so the struct is the resolved form.
type Profile struct {
	// Name identifies the profile (built-in name, or the file's "name" field).
	Name string `json:"name"`
	// Description is free text for `vatrun profile list`.
	Description string `json:"description,omitempty"`
	// Consensus: cgroup v2 is mandatory, worker stdout/stderr are /dev/null, any missing feature
	// refuses to start.
	Consensus bool `json:"consensus"`
	// Limits are the resource limits (cgroup and rlimits).
	Limits Limits `json:"limits"`
	// Namespaces says which namespaces the worker gets.
	Namespaces Namespaces `json:"namespaces"`
	// Fds are the descriptors above stdio that the worker type uses and that reach it at the same
	// numbers, untouched, when the parent passed them (default [3, 4]: commands in, results out;
	// xsnap 0.15 also uses 7 and 8 for snapshots). Every other fd is closed in the worker; one
	// the parent left closed stays closed. A property of the worker type, so it is in the digest.
	Fds []int `json:"fds"`
	// Env is the worker's whole environment: "NAME=value" sets a value, a bare "NAME" passes
	// vatrun's own value through when it has one. Nothing else reaches the worker (default: an
	// empty environment), so two validators with the same digest give their workers the same
	// variables.
	Env []string `json:"env"`
	// Mounts are the paths the worker sees besides its executable and libraries: each target,
	// and whether it is writable, is part of the sandbox (in the digest); the host source is given
	// at run time (`vatrun run --mount TARGET=SOURCE`), because host paths differ per validator.
	Mounts []MountPoint `json:"mounts"`
	// Tmp is the size of a private tmpfs at /tmp (0: no /tmp). Its pages count against the
	// worker's memory cgroup.
	Tmp Size `json:"tmp"`
	// Seccomp is the filter in OCI runtime-spec shape; nil means no filter.
	Seccomp *Seccomp `json:"seccomp,omitempty"`
	// ExitCodes gives the worker's own exit codes a meaning, keyed by the decimal code ("11").
	ExitCodes map[string]ExitCode `json:"exitCodes,omitempty"`
	// Engine states the worker engine's own deterministic caps (nil: none stated); in the digest
	// only when set. launcher/plan refuses a consensus profile whose limits could fire before them.
	Engine *Engine `json:"engine,omitempty"`
	// Isolation is the least isolation the profile accepts (in the digest, so two validators with
	// the same digest cannot run different isolation): "" or IsolationNamespaces (the profile's
	// namespaces, or refuse), IsolationLandlock (no namespaces: Landlock, the filter, rlimits,
	// no_new_privs, a new session, the parent-death signal), or IsolationNamespacesOrLandlock (the
	// namespaces where they can be created, else Landlock; never for a consensus profile).
	Isolation Isolation `json:"isolation,omitempty"`
	// Pins are host facts and the worker's identity the profile requires; vatrun refuses to
	// start a worker when one does not hold. Nil (absent) means no pins; in the digest only when
	// set, so profiles without pins keep their digests.
	Pins *Pins `json:"pins,omitempty"`

	// Source is where the profile came from ("builtin:xsnap" or the file path); not in the digest.
	Source string `json:"-"`
}

// Size is a byte count. JSON accepts a number of bytes, a string with a binary unit suffix
// ("512K", "64M", "2G", case-insensitive, optional trailing "i"/"iB"/"B"), or "max" (Unlimited).
type Size int64

// Unlimited is the Size of "max".
const Unlimited Size = -1

// Limits, resolved. For Size fields Unlimited means no limit.
type Limits struct {
	// Memory is cgroup memory.max.
	Memory Size `json:"memory"`
	// Swap is cgroup memory.swap.max (default 0).
	Swap Size `json:"swap"`
	// CPUMax is cgroup cpu.max in the kernel's syntax: "QUOTA PERIOD" in microseconds, or
	// "max PERIOD" (default "max 100000").
	CPUMax string `json:"cpuMax"`
	// CPUSeconds is the RLIMIT_CPU soft limit; the hard limit is CPUSeconds+1 so that SIGXCPU
	// arrives first. 0 means unlimited.
	CPUSeconds uint64 `json:"cpuSeconds"`
	// Pids is cgroup pids.max; 0 means unlimited.
	Pids int64 `json:"pids"`
	// Stack is RLIMIT_STACK.
	Stack Size `json:"stack"`
	// Nofile is RLIMIT_NOFILE (soft = hard); 0 means leave as inherited.
	Nofile uint64 `json:"nofile"`
	// Core is RLIMIT_CORE (default 0: no core dumps).
	Core Size `json:"core"`
	// FileSize is RLIMIT_FSIZE.
	FileSize Size `json:"fileSize"`
}

// UserNS says when the worker gets a user namespace.
type UserNS string

const (
	// UserAuto: only when vatrun is unprivileged (no CAP_SYS_ADMIN), which it needs to create
	// the other namespaces.
	UserAuto UserNS = "auto"
	// UserAlways: always.
	UserAlways UserNS = "always"
	// UserNever: never (unprivileged vatrun then cannot create other namespaces).
	UserNever UserNS = "never"
)

// Namespaces the worker is placed in. Pid implies the worker is NOT pid 1: vatrun's init stage is.
type Namespaces struct {
	Pid   bool `json:"pid"`
	Net   bool `json:"net"`
	IPC   bool `json:"ipc"`
	UTS   bool `json:"uts"`
	Mount bool `json:"mount"` // private mount namespace with a read-only view of / and a fresh /proc
	// User: "auto" (default), "always", "never".
	User UserNS `json:"user"`
}

// Seccomp is the OCI runtime-spec LinuxSeccomp subset vatrun supports.
type Seccomp struct {
	DefaultAction   specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet *uint                    `json:"defaultErrnoRet,omitempty"`
	Architectures   []specs.Arch             `json:"architectures,omitempty"`
	Syscalls        []SeccompSyscall         `json:"syscalls,omitempty"`
}

// SeccompSyscall is one rule: the names get Action when all Args match.
type SeccompSyscall struct {
	Names    []string                 `json:"names"`
	Action   specs.LinuxSeccompAction `json:"action"`
	ErrnoRet *uint                    `json:"errnoRet,omitempty"`
	Args     []SeccompArg             `json:"args,omitempty"`
}

// SeccompArg is an argument condition (OCI shape).
type SeccompArg struct {
	Index    uint                       `json:"index"`
	Value    uint64                     `json:"value"`
	ValueTwo uint64                     `json:"valueTwo,omitempty"`
	Op       specs.LinuxSeccompOperator `json:"op"`
}

// ExitCode is what one of the worker's own exit codes means.
type ExitCode struct {
	Meaning string `json:"meaning"`
	// MeteringFault: the worker reports a deterministic meter overrun (xsnap 11, 12, 17).
	MeteringFault bool `json:"meteringFault,omitempty"`
	// Meter names the engine meter behind a metering fault: MeterMemory (xsnap 11), MeterStack
	// (12), MeterComputation (17), MeterKeys (16); "" for none said. A memory metering fault is
	// deterministic only when nothing else can make the engine's allocations fail first: under
	// a stand-in rlimit (no memory cgroup) the report says the rlimit may have caused it.
	Meter string `json:"meter,omitempty"`
}

// The engine meters an exit code's Meter can name.
const (
	MeterMemory      = "memory"
	MeterStack       = "stack"
	MeterComputation = "computation"
	MeterKeys        = "keys"
)

// Engine is what the worker engine itself enforces, deterministically, before any limit of
// vatrun's: vatrun's limits are a safety net for engine bugs and must never be the first thing to
// fire (docs/limits.md). Each field is a fact about the engine build the profile is for.
type Engine struct {
	// AllocationLimit is the engine's allocation meter: the most heap it lets the program
	// allocate before it exits with a memory metering fault (xsnap: 2G, allocationLimit in
	// xsnapPlatform.c, exit 11). Unlimited: the engine has no allocation meter.
	AllocationLimit Size `json:"allocationLimit"`
	// Overhead is what the worker holds beyond its metered allocations when that meter trips
	// (executable, libraries, allocator overhead, page tables, I/O and snapshot buffers),
	// measured (docs/limits.md). limits.memory must be at least AllocationLimit + Overhead + tmp.
	Overhead Size `json:"overhead"`
	// StackMargin is where the engine's native-stack meter trips: this far above the bottom of
	// the stack RLIMIT_STACK allows (xsnap: 128K, fxCStackLimit in the XS platform layer, exit
	// 12). 0: the engine has no native-stack meter. The meter's depth then follows limits.stack,
	// which must be finite and above the margin.
	StackMargin Size `json:"stackMargin"`
}

// MountPoint is one path the profile makes visible to the worker.
type MountPoint struct {
	// Target is the absolute path inside the sandbox.
	Target string `json:"target"`
	// Writable: a read-write bind (default read-only).
	Writable bool `json:"writable,omitempty"`
}

// Pins are what a profile requires of the host and the worker (see hostfacts). Each set field
// must hold at launch, or vatrun refuses to start the worker (exit 125).
type Pins struct {
	// WorkerDigest: the worker digest ("sha256:…", `vatrun check --worker PATH`) the worker
	// must have: its executable, interpreter and shared libraries.
	WorkerDigest string `json:"workerDigest,omitempty"`
	// KernelMin: the oldest kernel release allowed ("6.1", "5.15.0").
	KernelMin string `json:"kernelMin,omitempty"`
	// Facts: host fact name → the exact value required (`vatrun check` lists names and values).
	Facts map[string]string `json:"facts,omitempty"`
}

// Isolation is a profile's least accepted isolation (Profile.Isolation).
type Isolation string

const (
	// IsolationNamespaces: the profile's namespaces (the default, "" too).
	IsolationNamespaces Isolation = "namespaces"
	// IsolationLandlock: no namespaces; Landlock confines the worker's filesystem to its own
	// files, read-only, and (kernel ABI 6) its signals and abstract sockets to its own domain.
	IsolationLandlock Isolation = "landlock"
	// IsolationNamespacesOrLandlock: the namespaces where they can be created, else Landlock.
	IsolationNamespacesOrLandlock Isolation = "namespaces-or-landlock"
)
