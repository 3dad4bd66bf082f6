// Package dockerseccomp reads Docker's seccomp profile format (moby's: rules with includes and
// excludes by capability, architecture and kernel), derives vatrun's recipe from Docker's default
// profile (Recipe), and resolves a profile for one container the way dockerd does before it hands
// the runtime an OCI seccomp section (Resolve: what the container tests give crun).
//
//go:generate go run ./gen ../../contrib/seccomp/moby-default.json ../../contrib/docker-seccomp.json
package dockerseccomp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// Profile is a seccomp profile in Docker's format.
type Profile struct {
	DefaultAction   string    `json:"defaultAction"`
	DefaultErrnoRet *uint     `json:"defaultErrnoRet,omitempty"`
	ArchMap         []ArchMap `json:"archMap,omitempty"`
	Syscalls        []Syscall `json:"syscalls"`
}

// ArchMap is an architecture and its sub-architectures.
type ArchMap struct {
	Architecture     string   `json:"architecture"`
	SubArchitectures []string `json:"subArchitectures"`
}

// Syscall is one rule.
type Syscall struct {
	Names    []string `json:"names"`
	Action   string   `json:"action"`
	Args     []Arg    `json:"args,omitempty"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	Comment  string   `json:"comment,omitempty"`
	Includes *Filter  `json:"includes,omitempty"`
	Excludes *Filter  `json:"excludes,omitempty"`
}

// Arg is a condition on one argument.
type Arg struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo,omitempty"`
	Op       string `json:"op"`
}

// Filter says when a rule applies: every listed capability in the bounding set, the
// architecture among Arches, the kernel at least MinKernel.
type Filter struct {
	Caps      []string `json:"caps,omitempty"`
	Arches    []string `json:"arches,omitempty"`
	MinKernel string   `json:"minKernel,omitempty"`
}

// Parse reads a Docker-format profile, refusing unknown fields.
func Parse(data []byte) (*Profile, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("docker seccomp profile: %w", err)
	}
	return &p, nil
}

// Marshal writes p as indented JSON with a final newline.
func (p *Profile) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(p, "", "\t")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// VatrunNeeds are the system calls the sandbox makes that Docker's default profile allows only
// with CAP_SYS_ADMIN (which a container without privileges lacks) or not at all: clone with
// namespace flags (the init stage's user, pid, mount, net, ipc and uts namespaces), clone3 (the
// clone into a delegated cgroup, CLONE_INTO_CGROUP; Docker answers ENOSYS), and, inside the new
// user namespace, mount, umount2, pivot_root (the minimal root) and sethostname.
var VatrunNeeds = []string{"clone", "clone3", "mount", "umount2", "pivot_root", "sethostname"}

// RecipeComment marks the rule the recipe adds.
const RecipeComment = "vatrun: the sandbox's namespaces and minimal root (contrib/seccomp/README.md)"

// Recipe is Docker's default profile plus only what vatrun needs (VatrunNeeds), unconditionally:
// the names leave the rules that allowed them only with CAP_SYS_ADMIN (and clone's rules that
// allowed it without namespace flags, and clone3's ENOSYS rule), and one rule allows them all.
// Every other rule is Docker's, unchanged, in Docker's order.
func Recipe(def *Profile) *Profile {
	out := *def
	out.Syscalls = nil
	for _, r := range def.Syscalls {
		var kept []string
		for _, n := range r.Names {
			if !slices.Contains(VatrunNeeds, n) {
				kept = append(kept, n)
			}
		}
		if len(kept) == 0 {
			continue // a rule only about clone or clone3 (their flag checks, clone3's ENOSYS)
		}
		r.Names = kept
		out.Syscalls = append(out.Syscalls, r)
	}
	out.Syscalls = append(out.Syscalls, Syscall{Names: slices.Clone(VatrunNeeds), Action: "SCMP_ACT_ALLOW", Comment: RecipeComment})
	return &out
}

// OCI is the seccomp section of an OCI runtime config (what dockerd gives runc or crun).
type OCI struct {
	DefaultAction   string       `json:"defaultAction"`
	DefaultErrnoRet *uint        `json:"defaultErrnoRet,omitempty"`
	Architectures   []string     `json:"architectures,omitempty"`
	Syscalls        []OCISyscall `json:"syscalls,omitempty"`
}

// OCISyscall is one rule of an OCI seccomp section.
type OCISyscall struct {
	Names    []string `json:"names"`
	Action   string   `json:"action"`
	ErrnoRet *uint    `json:"errnoRet,omitempty"`
	Args     []Arg    `json:"args,omitempty"`
}

// Resolve is p for one container the way dockerd resolves it: the architectures of arch (a Go
// GOARCH name, as Docker's filters name them), and each rule whose includes all hold and whose
// excludes none hold for the bounding capabilities caps ("CAP_SYS_ADMIN", …) and the kernel
// release (minKernel compares major.minor).
func Resolve(p *Profile, caps []string, arch, kernel string) (*OCI, error) {
	native := map[string]string{"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "386": "SCMP_ARCH_X86"}[arch]
	goArch := map[string]string{"386": "x86"}[arch]
	if goArch == "" {
		goArch = arch
	}
	out := &OCI{DefaultAction: p.DefaultAction, DefaultErrnoRet: p.DefaultErrnoRet}
	for _, a := range p.ArchMap {
		if a.Architecture == native {
			out.Architectures = append(append(out.Architectures, a.Architecture), a.SubArchitectures...)
		}
	}
	kernelAtLeast := func(min string) (bool, error) {
		var kmaj, kmin, mmaj, mmin int
		if _, err := fmt.Sscanf(kernel, "%d.%d", &kmaj, &kmin); err != nil {
			return false, fmt.Errorf("kernel release %q: %w", kernel, err)
		}
		if _, err := fmt.Sscanf(min, "%d.%d", &mmaj, &mmin); err != nil {
			return false, fmt.Errorf("minKernel %q: %w", min, err)
		}
		return kmaj > mmaj || kmaj == mmaj && kmin >= mmin, nil
	}
rules:
	for _, r := range p.Syscalls {
		if e := r.Excludes; e != nil {
			if slices.Contains(e.Arches, goArch) {
				continue
			}
			for _, c := range e.Caps {
				if slices.Contains(caps, c) {
					continue rules
				}
			}
			if e.MinKernel != "" {
				ok, err := kernelAtLeast(e.MinKernel)
				if err != nil {
					return nil, err
				}
				if ok {
					continue
				}
			}
		}
		if i := r.Includes; i != nil {
			if len(i.Arches) > 0 && !slices.Contains(i.Arches, goArch) {
				continue
			}
			for _, c := range i.Caps {
				if !slices.Contains(caps, c) {
					continue rules
				}
			}
			if i.MinKernel != "" {
				ok, err := kernelAtLeast(i.MinKernel)
				if err != nil {
					return nil, err
				}
				if !ok {
					continue
				}
			}
		}
		out.Syscalls = append(out.Syscalls, OCISyscall{Names: r.Names, Action: r.Action, ErrnoRet: r.ErrnoRet, Args: r.Args})
	}
	return out, nil
}

// DockerCaps are the capabilities Docker gives a container by default (moby
// daemon/pkg/oci/caps/defaults.go).
var DockerCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// DockerMaskedPaths and DockerReadonlyPaths are Docker's defaults for a container without
// --security-opt systempaths=unconfined (moby daemon/pkg/oci/defaults.go; the per-CPU
// thermal_throttle paths left out).
var (
	DockerMaskedPaths   = []string{"/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list", "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware"}
	DockerReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)
