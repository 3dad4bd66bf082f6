// Package learn builds a minimal allowlist profile from the syscalls a worker was seen to make
// (`vatrun profile learn`), and records them: the helper that loads a notifying seccomp filter
// right before the worker's execve, and the loop that answers its notifications.
package learn

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"

	"github.com/vatrun/vatrun/seccompprofiles"
	"github.com/vatrun/vatrun/seccompprofiles/filter"
)

// Usage is the set of syscalls a worker was seen to make while `vatrun profile learn` watched it,
// per architecture, with how often each was made. The zero value is ready to use.
type Usage struct {
	counts map[usageKey]uint64
}

type usageKey struct {
	arch libseccomp.ScmpArch
	nr   libseccomp.ScmpSyscall
}

// SyscallUse is one syscall of a Usage.
type SyscallUse struct {
	// Arch is the OCI architecture name (SCMP_ARCH_X86_64), or libseccomp's name when it has none.
	Arch string
	// Name is the syscall's name on Arch; empty when libseccomp does not know the number.
	Name  string
	Nr    int
	Count uint64
}

// Record notes one syscall made by the watched worker.
func (u *Usage) Record(arch libseccomp.ScmpArch, nr libseccomp.ScmpSyscall) {
	if u.counts == nil {
		u.counts = make(map[usageKey]uint64)
	}
	u.counts[usageKey{arch, nr}]++
}

// Len is the number of distinct (architecture, syscall) pairs seen.
func (u *Usage) Len() int { return len(u.counts) }

// Calls lists what was seen, sorted by architecture and name.
func (u *Usage) Calls() []SyscallUse {
	out := make([]SyscallUse, 0, len(u.counts))
	for k, n := range u.counts {
		c := SyscallUse{Arch: filter.OCIArchName(k.arch), Nr: int(k.nr), Count: n}
		if name, err := k.nr.GetNameByArch(k.arch); err == nil {
			c.Name = name
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Arch != out[j].Arch {
			return out[i].Arch < out[j].Arch
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Nr < out[j].Nr
	})
	return out
}

// LearnOptions names the learned profile.
type LearnOptions struct {
	Name        string
	Description string
}

// Learn builds a minimal allowlist profile from what a worker was seen to use: everything but the
// seccomp section (limits, namespaces, consensus, exit codes) comes from base; the seccomp section
// allows exactly the syscalls in u, on the architectures in u, and fails every other syscall with
// EPERM (ENOSYS above the highest one named, as for every profile). A syscall that base allows
// only under argument conditions (xsnap's ioctl and prlimit64, say) keeps base's conditional
// rules rather than becoming unconditional, so the learned profile is never wider than base
// there. The profile is validated with seccompprofiles.Parse and compiled with filter.Compile
// before it is returned, with its JSON and notes for the operator's review (syscalls base would not allow, numbers libseccomp cannot name).
func Learn(base *seccompprofiles.Profile, u *Usage, opts LearnOptions) (*seccompprofiles.Profile, []byte, []string, error) {
	var notes []string
	byArch := map[specs.Arch][]string{}
	for _, c := range u.Calls() {
		if c.Name == "" {
			notes = append(notes, fmt.Sprintf("syscall number %d on %s has no name in libseccomp %s; it is not in the profile", c.Nr, c.Arch, filter.LibseccompVersion()))
			continue
		}
		if !slices.Contains(seccompprofiles.Architectures, specs.Arch(c.Arch)) {
			notes = append(notes, fmt.Sprintf("architecture %s (syscall %s) cannot be named in a profile; left out", c.Arch, c.Name))
			continue
		}
		byArch[specs.Arch(c.Arch)] = append(byArch[specs.Arch(c.Arch)], c.Name)
	}
	if len(byArch) == 0 {
		return nil, nil, notes, fmt.Errorf("no syscalls were recorded: nothing to learn from")
	}
	archs := make([]specs.Arch, 0, len(byArch))
	var names []string
	for a, ns := range byArch {
		archs = append(archs, a)
		names = append(names, ns...)
	}
	slices.Sort(archs)
	names = slices.Compact(slices.Sorted(slices.Values(names)))

	var plain []string
	var conditional []seccompprofiles.SeccompSyscall
	var outsideBase, condNames []string
	for _, n := range names {
		allowed, conds := baseAllows(base, n)
		switch {
		case allowed:
			plain = append(plain, n)
		case len(conds) > 0:
			conditional = append(conditional, conds...)
			condNames = append(condNames, n)
		default:
			plain = append(plain, n)
			outsideBase = append(outsideBase, n)
		}
	}
	if len(condNames) > 0 {
		notes = append(notes, fmt.Sprintf("kept %s's argument conditions for: %s", base.Name, strings.Join(condNames, ", ")))
	}
	if len(outsideBase) > 0 {
		notes = append(notes, fmt.Sprintf("used but not allowed by %s (review them): %s", base.Name, strings.Join(outsideBase, ", ")))
	}

	p := *base
	p.Name = opts.Name
	p.Description = opts.Description
	p.Source = ""
	eperm := seccompprofiles.DefaultErrno
	p.Seccomp = &seccompprofiles.Seccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   archs,
		Syscalls:        append([]seccompprofiles.SeccompSyscall{{Names: plain, Action: specs.ActAllow}}, conditional...),
	}
	if len(plain) == 0 {
		p.Seccomp.Syscalls = conditional
	}
	data, err := json.MarshalIndent(&p, "", "  ")
	if err != nil {
		return nil, nil, notes, fmt.Errorf("encode the learned profile: %w", err)
	}
	data = append(data, '\n')
	parsed, err := seccompprofiles.Parse(data, "learned profile")
	if err != nil {
		return nil, nil, notes, fmt.Errorf("the learned profile does not validate (a bug): %w", err)
	}
	_, warnings, err := filter.Compile(parsed)
	notes = append(notes, warnings...)
	if err != nil {
		return nil, nil, notes, fmt.Errorf("the learned profile does not compile: %w", err)
	}
	return parsed, data, notes, nil
}

// baseAllows says whether base lets syscall name through unconditionally, and otherwise returns
// base's conditional ALLOW rules for it (each narrowed to this one name). A base whose default
// allows and that refuses only some arguments of name (dev's fcntl F_SETOWN, ioctl FIOSETOWN)
// counts as allowing it: an allowlist cannot say "every argument but these" in one rule.
func baseAllows(base *seccompprofiles.Profile, name string) (bool, []seccompprofiles.SeccompSyscall) {
	s := base.Seccomp
	if s == nil {
		return true, nil
	}
	var conds []seccompprofiles.SeccompSyscall
	named := false
	for _, r := range s.Syscalls {
		if !slices.Contains(r.Names, name) {
			continue
		}
		if seccompprofiles.CanonicalAction(r.Action) != specs.ActAllow {
			if len(r.Args) == 0 {
				named = true
			}
			continue
		}
		named = true
		if len(r.Args) == 0 {
			return true, nil
		}
		conds = append(conds, seccompprofiles.SeccompSyscall{Names: []string{name}, Action: specs.ActAllow, Args: slices.Clone(r.Args)})
	}
	if !named && seccompprofiles.CanonicalAction(s.DefaultAction) == specs.ActAllow {
		return true, nil
	}
	return false, conds
}
