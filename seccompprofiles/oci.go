package seccompprofiles

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Actions lists the OCI seccomp actions a profile may use, sorted. SCMP_ACT_KILL means
// SCMP_ACT_KILL_THREAD (OCI and libseccomp agree); the canonical form spells it so.
var Actions = []specs.LinuxSeccompAction{
	specs.ActAllow, specs.ActErrno, specs.ActKill, specs.ActKillProcess,
	specs.ActKillThread, specs.ActLog, specs.ActTrap,
}

// unsupportedActions are OCI actions vatrun refuses, with the reason.
var unsupportedActions = map[specs.LinuxSeccompAction]string{
	specs.ActNotify: "needs a seccomp agent listening on a notification fd, and vatrun runs none",
	specs.ActTrace:  "needs a ptrace tracer attached to the worker, and vatrun attaches none",
}

// Architectures lists the OCI architecture names a profile may use, sorted.
var Architectures = []specs.Arch{
	specs.ArchAARCH64, specs.ArchARM, specs.ArchLOONGARCH64, specs.ArchM68K, specs.ArchMIPS,
	specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL, specs.ArchMIPSEL64,
	specs.ArchMIPSEL64N32, specs.ArchPARISC, specs.ArchPARISC64, specs.ArchPPC, specs.ArchPPC64,
	specs.ArchPPC64LE, specs.ArchRISCV64, specs.ArchS390, specs.ArchS390X, specs.ArchSH,
	specs.ArchSHEB, specs.ArchX32, specs.ArchX86, specs.ArchX86_64,
}

// Operators lists the OCI argument comparison operators a profile may use, sorted.
var Operators = []specs.LinuxSeccompOperator{
	specs.OpEqualTo, specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpLessEqual,
	specs.OpLessThan, specs.OpMaskedEqual, specs.OpNotEqual,
}

// CanonicalAction is the canonical spelling of an action: SCMP_ACT_KILL is SCMP_ACT_KILL_THREAD.
func CanonicalAction(a specs.LinuxSeccompAction) specs.LinuxSeccompAction {
	if a == specs.ActKill {
		return specs.ActKillThread
	}
	return a
}

func knownAction(a specs.LinuxSeccompAction) bool { return slices.Contains(Actions, a) }

func knownArch(a specs.Arch) bool { return slices.Contains(Architectures, a) }

func knownOperator(o specs.LinuxSeccompOperator) bool { return slices.Contains(Operators, o) }

// joinNames spells a list of OCI names for messages.
func joinNames[T ~string](xs []T) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ", "
		}
		out += string(x)
	}
	return out
}
