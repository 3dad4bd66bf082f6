package plan

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

func TestProfileRlimits(t *testing.T) {
	want := []Rlimit{
		{unix.RLIMIT_STACK, "RLIMIT_STACK", 8 << 20, 8 << 20},
		{unix.RLIMIT_NOFILE, "RLIMIT_NOFILE", 64, 64},
		{unix.RLIMIT_CORE, "RLIMIT_CORE", 0, 0},
		{unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", unix.RLIM_INFINITY, unix.RLIM_INFINITY},
	}
	if got := ProfileRlimits(builtin(t, "xsnap")); !reflect.DeepEqual(got, want) {
		t.Errorf("xsnap rlimits = %+v\nwant %+v", got, want)
	}
	p := parse(t, `{"limits": {"nofile": 0, "memory": "max", "stack": "max", "fileSize": "1M", "core": "max", "cpuSeconds": 5}}`)
	want = []Rlimit{
		{unix.RLIMIT_CPU, "RLIMIT_CPU", 5, 6},
		{unix.RLIMIT_STACK, "RLIMIT_STACK", unix.RLIM_INFINITY, unix.RLIM_INFINITY},
		{unix.RLIMIT_CORE, "RLIMIT_CORE", unix.RLIM_INFINITY, unix.RLIM_INFINITY},
		{unix.RLIMIT_FSIZE, "RLIMIT_FSIZE", 1 << 20, 1 << 20},
	}
	if got := ProfileRlimits(p); !reflect.DeepEqual(got, want) {
		t.Errorf("rlimits = %+v\nwant %+v", got, want)
	}
}

func TestWorkerEnv(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"TZ": "UTC", "HOME": "/root"}[k]
		return v, ok
	}
	if got := WorkerEnv(parse(t, `{"env": ["LANG=C.UTF-8", "TZ", "EMPTY="]}`), lookup); !reflect.DeepEqual(got, []string{"LANG=C.UTF-8", "TZ=UTC", "EMPTY="}) {
		t.Errorf("WorkerEnv = %q", got)
	}
	if got := WorkerEnv(parse(t, `{"env": ["HOME_NOT_SET"]}`), lookup); len(got) != 0 {
		t.Errorf("a pass-through name vatrun does not have must be left out: %q", got)
	}
	if got := WorkerEnv(parse(t, `{}`), lookup); len(got) != 0 {
		t.Errorf("default environment %q, want empty (nothing of vatrun's own)", got)
	}
}

func TestSignalsAndProcesses(t *testing.T) {
	for name, want := range map[string]bool{"xsnap": false, "consensus": false, "solo": false, "dev": true} {
		if got := workerCanSignalItself(builtin(t, name)); got != want {
			t.Errorf("%s: workerCanSignalItself %v, want %v", name, got, want)
		}
	}
	if !workerCanSignalItself(parse(t, `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["tgkill"], "action": "SCMP_ACT_ALLOW"}]}}`)) {
		t.Error("an unrestricted tgkill lets the worker signal itself")
	}
	for _, name := range []string{"fcntl", "ioctl", "setitimer", "clone"} {
		if !workerCanSignalItself(parse(t, `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["`+name+`"], "action": "SCMP_ACT_ALLOW"}]}}`)) {
			t.Errorf("an unrestricted %s lets the kernel signal the worker on its behalf", name)
		}
	}
	if allowsProcessCreation(parse(t, `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}`)) {
		t.Error("an empty allowlist allows process creation")
	}
	if !allowsProcessCreation(builtin(t, "solo")) || allowsProcessCreation(builtin(t, "xsnap")) {
		t.Error("solo allows fork, xsnap does not")
	}
}

func TestExitMeaningsMemoryMeter(t *testing.T) {
	m := profileExitMeanings(builtin(t, "consensus"))
	if !m[11].MeteringFault || !m[11].Memory {
		t.Errorf("consensus exit 11 = %+v: want a memory metering fault", m[11])
	}
	if !m[12].MeteringFault || m[12].Memory || !m[17].MeteringFault || m[17].Memory {
		t.Errorf("exit 12 %+v, 17 %+v: metering faults of other meters", m[12], m[17])
	}
	if m[0] != (report.ExitMeaning{Meaning: "success"}) {
		t.Errorf("exit 0 = %+v", m[0])
	}
}

// mmapRule is a profile allowing read/write/exit and mmap under the given rule arguments.
func mmapProfile(args string) string {
	return `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
		{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
		{"names": ["mmap"], "action": "SCMP_ACT_ALLOW"` + args + `}]}}`
}

func TestSharedMemoryPossible(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      bool
	}{
		{"no filter rules, default allow", `{"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`, true},
		{"mmap allowed with any flags", mmapProfile(``), true},
		{"MAP_SHARED clear (mask 1, result 0)", mmapProfile(`, "args": [{"index": 3, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]`), false},
		{"MAP_SHARED required (mask 1, result 1)", mmapProfile(`, "args": [{"index": 3, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]`), true},
		{"a mask without the MAP_SHARED bit", mmapProfile(`, "args": [{"index": 3, "value": 2, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]`), true},
		{"the condition on another argument", mmapProfile(`, "args": [{"index": 2, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]`), true},
		{"flags exactly MAP_PRIVATE|MAP_ANONYMOUS", mmapProfile(`, "args": [{"index": 3, "value": 34, "op": "SCMP_CMP_EQ"}]`), false},
		{"alternatives on flags, one allowing shared", mmapProfile(`, "args": [{"index": 3, "value": 34, "op": "SCMP_CMP_EQ"}, {"index": 3, "value": 33, "op": "SCMP_CMP_EQ"}]`), true},
		{"private flags and a prot condition together", mmapProfile(`, "args": [{"index": 3, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}, {"index": 2, "value": 4, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]`), false},
		{"private-only mmap, but 32-bit x86 too (old_mmap's flags are in memory)", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"], "syscalls": [
			{"names": ["mmap"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 3, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]}}`, true},
		{"memfd_create allowed", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["memfd_create"], "action": "SCMP_ACT_ALLOW"}]}}`, true},
		{"mmap refused", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["mmap"], "action": "SCMP_ACT_ERRNO"}]}}`, false},
	} {
		if got := sharedMemoryPossible(parse(t, c.src)); got != c.want {
			t.Errorf("%s: sharedMemoryPossible %v, want %v", c.name, got, c.want)
		}
	}
	// The built-ins without the private-only mmap rule (h-args adds it) allow shared mappings;
	// dev allows everything.
	if !sharedMemoryPossible(builtin(t, "dev")) {
		t.Error("dev allows shared memory")
	}
}

func TestSharedMemoryEnforcementText(t *testing.T) {
	shared, err := Compile(parse(t, mmapProfile(``)))
	if err != nil {
		t.Fatal(err)
	}
	private, err := Compile(parse(t, mmapProfile(`, "args": [{"index": 3, "value": 1, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := shared.Enforcement(false)["memory"]; !strings.Contains(got, "does NOT bound shared memory") {
		t.Errorf("no cgroup, shared mappings allowed: memory %q, want it to say the bound does not hold for shared memory", got)
	}
	if got := private.Enforcement(false)["memory"]; strings.Contains(got, "NOT") || !strings.Contains(got, "RLIMIT_DATA") {
		t.Errorf("no cgroup, private mappings only: memory %q", got)
	}
	if got := shared.Enforcement(true)["memory"]; got != "cgroup memory.max" {
		t.Errorf("with a cgroup: memory %q (memory.max counts shared pages too)", got)
	}
	if shared.MemoryStandIn(false) != "RLIMIT_DATA" || shared.MemoryStandIn(true) != "" {
		t.Errorf("MemoryStandIn(false) %q, (true) %q", shared.MemoryStandIn(false), shared.MemoryStandIn(true))
	}
}

const engineXsnap = `"engine": {"allocationLimit": "2G", "overhead": "256M", "stackMargin": "128K"}`

func TestLimitOrder(t *testing.T) {
	consensus := func(limits string) string {
		return `{"consensus": true, "limits": {` + limits + `}, ` + engineXsnap + `, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}}`
	}
	for _, c := range []struct {
		limits string
		want   []string // substrings of the refusal; none: compiles
	}{
		{`"memory": "3G", "pids": 16`, nil},
		{`"memory": "1G", "pids": 16`, []string{"limits.memory 1G could fire before the engine's allocation meter", "engine.allocationLimit 2G", "at least 2304M"}},
		{`"memory": "2G", "pids": 16`, []string{"limits.memory 2G", "2304M"}},
		{`"memory": "3G", "pids": 16, "stack": "128K"`, []string{"limits.stack 128K could fire before the engine's native-stack meter"}},
		{`"memory": "3G", "pids": 16, "fileSize": "1G"`, []string{"limits.fileSize 1G could fire before the engine's allocation meter"}},
	} {
		_, err := Compile(parse(t, consensus(c.limits)))
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.limits, err)
			}
			continue
		}
		if !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err %v, want a refusal", c.limits, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nwant %q", c.limits, err, w)
			}
		}
	}
	// The same limits without consensus: a warning, not a refusal.
	pl, err := Compile(parse(t, `{"limits": {"memory": "1G"}, `+engineXsnap+`, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.LimitWarnings) != 1 || !strings.Contains(pl.LimitWarnings[0], "limits.memory 1G could fire") {
		t.Errorf("limit warnings %q", pl.LimitWarnings)
	}
	// An unlimited stack (possible only with unlimited memory, so never under consensus).
	pl, err = Compile(parse(t, `{"limits": {"memory": "max", "stack": "max"}, `+engineXsnap+`, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.LimitWarnings) != 1 || !strings.Contains(pl.LimitWarnings[0], `limits.stack "max"`) {
		t.Errorf("limit warnings %q", pl.LimitWarnings)
	}
	// /tmp pages count against memory too.
	if _, err := Compile(parse(t, `{"consensus": true, "tmp": "512M", "limits": {"memory": "2304M", "pids": 16}, `+engineXsnap+`, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO"}]}}`)); err == nil || !strings.Contains(err.Error(), "+ tmp 512M") {
		t.Errorf("tmp not counted: %v", err)
	}
	// Every built-in keeps its limits above its engine's meters.
	for _, name := range seccompprofiles.BuiltinNames() {
		pl, err := Compile(builtin(t, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if len(pl.LimitWarnings) > 0 {
			t.Errorf("%s: limit warnings %q", name, pl.LimitWarnings)
		}
	}
}
