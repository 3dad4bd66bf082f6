package seccompprofiles

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func mustParse(t *testing.T, src string) *Profile {
	t.Helper()
	p, err := Parse([]byte(src), "test.json")
	if err != nil {
		t.Fatalf("Parse(%s): %v", src, err)
	}
	return p
}

func TestParseDefaults(t *testing.T) {
	p := mustParse(t, `{}`)
	want := Limits{Memory: 1 << 30, Swap: 0, CPUMax: "max 100000", CPUSeconds: 0, Pids: 0,
		Stack: 8 << 20, Nofile: 64, Core: 0, FileSize: Unlimited}
	if p.Limits != want {
		t.Errorf("default limits = %+v, want %+v", p.Limits, want)
	}
	if (p.Namespaces != Namespaces{Pid: true, Net: true, IPC: true, UTS: true, Mount: true, User: UserAuto}) {
		t.Errorf("default namespaces = %+v", p.Namespaces)
	}
	if p.Seccomp != nil || p.Consensus || p.ExitCodes != nil || p.Source != "test.json" {
		t.Errorf("defaults: seccomp %v consensus %v exitCodes %v source %q", p.Seccomp, p.Consensus, p.ExitCodes, p.Source)
	}
}

func TestParseExplicitValuesOverrideDefaults(t *testing.T) {
	p := mustParse(t, `{"limits": {"fileSize": 0, "nofile": 0, "cpuMax": " 50000   100000 ", "memory": "max", "stack": "max"},
		"namespaces": {"net": false, "user": "never"},
		"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}]}}`)
	l := p.Limits
	if l.FileSize != 0 || l.Nofile != 0 || l.CPUMax != "50000 100000" || l.Memory != Unlimited || l.Stack != Unlimited {
		t.Errorf("limits = %+v; want fileSize 0, nofile 0, cpuMax normalised, memory and stack max", l)
	}
	if p.Namespaces.Net || !p.Namespaces.Pid || p.Namespaces.User != UserNever {
		t.Errorf("namespaces = %+v; want net false, pid still true, user never", p.Namespaces)
	}
	if p.Seccomp.DefaultErrnoRet == nil || *p.Seccomp.DefaultErrnoRet != 1 ||
		p.Seccomp.Syscalls[0].ErrnoRet == nil || *p.Seccomp.Syscalls[0].ErrnoRet != 1 {
		t.Errorf("SCMP_ACT_ERRNO without an errno must default to EPERM (1): %+v", p.Seccomp)
	}
	if got := mustParse(t, `{"limits": {"cpuMax": "max"}}`).Limits.CPUMax; got != "max 100000" {
		t.Errorf(`cpuMax "max" resolved to %q, want "max 100000"`, got)
	}
}

func TestParseErrors(t *testing.T) {
	xsnapRule := `"syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]`
	cases := []struct{ name, src, want string }{
		{"unknown field", `{"limits": {"memroy": 1}}`,
			`profile ./p.json: unknown field "limits.memroy"; known fields of limits: memory, swap, cpuMax, cpuSeconds, pids, stack, nofile, core, fileSize`},
		{"unknown top field", `{"limit": {}}`, `unknown field "limit"; known fields: name, description, consensus, limits, namespaces, fds, env, mounts, tmp, seccomp, exitCodes`},
		{"case differs", `{"Limits": {}}`, `unknown field "Limits"`},
		{"nested unknown", `{"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": 1}]}}`,
			`unknown field "seccomp.syscalls[0].errno"; known fields of seccomp.syscalls[0]: names, action, errnoRet, args`},
		{"duplicate key", `{"limits": {"pids": 1, "pids": 2}}`, `limits.pids: appears twice`},
		{"bad unit", `{"limits": {"stack": "8Q"}}`, `limits.stack: invalid size "8Q": unknown unit "q"; accepted: a byte count`},
		{"negative size", `{"limits": {"swap": -1}}`, `limits.swap: invalid size -1: negative; use "max"`},
		{"null size", `{"limits": {"memory": null}}`, `limits.memory: null is not a size`},
		{"wrong type", `{"limits": {"cpuSeconds": "60"}}`, `field limits.cpuSeconds: got JSON string, want a non-negative integer`},
		{"negative uint", `{"limits": {"nofile": -3}}`, `field limits.nofile: got JSON number -3, want a non-negative integer`},
		{"syntax", "{\n  \"limits\": {,}\n}", `line 2, column 14: invalid JSON`},
		{"trailing", `{} {}`, `line 1, column 4: invalid JSON: invalid character '{' after top-level value`},
		{"empty", ``, `empty or truncated JSON`},
		{"memory too small", `{"limits": {"memory": "1M"}}`, `limits.memory: 1M is below the minimum 4M`},
		{"stack too small", `{"limits": {"stack": "4K"}}`, `limits.stack: 4K is below the minimum 64K`},
		{"stack above memory", `{"limits": {"memory": "16M", "stack": "32M"}}`, `limits.stack: 32M is above limits.memory 16M`},
		{"stack max with memory", `{"limits": {"stack": "max"}}`, `limits.stack: max is above limits.memory 1G`},
		{"nofile", `{"limits": {"nofile": 4}}`, `limits.nofile: 4 is below 8: the worker needs fds 0-4`},
		{"nofile huge", `{"limits": {"nofile": 99999999}}`, `limits.nofile: 99999999 is above 1048576`},
		{"pids negative", `{"limits": {"pids": -1}}`, `limits.pids: negative value -1; use 0 for no limit`},
		{"cpuMax one field", `{"limits": {"cpuMax": "50000"}}`, `limits.cpuMax: "50000" is not cpu.max syntax`},
		{"cpuMax period", `{"limits": {"cpuMax": "max 2000000"}}`, `period "2000000" must be an integer 1000..1000000`},
		{"cpuMax quota", `{"limits": {"cpuMax": "10 100000"}}`, `quota "10" must be "max" or an integer 1000..`},
		{"user ns", `{"namespaces": {"user": "sometimes"}}`, `namespaces.user: unknown value "sometimes"`},
		{"exit code 256", `{"exitCodes": {"256": {"meaning": "x"}}}`, `exitCodes.256: key "256" is not an exit code`},
		{"exit code text", `{"exitCodes": {"oom": {"meaning": "x"}}}`, `exitCodes.oom: key "oom" is not an exit code`},
		{"exit code zero padded", `{"exitCodes": {"011": {"meaning": "x"}}}`, `key "011" is not an exit code`},
		{"exit code 0 fault", `{"exitCodes": {"0": {"meaning": "x", "meteringFault": true}}}`, `exit code 0 is a clean exit`},
		{"exit meaning", `{"exitCodes": {"3": {}}}`, `exitCodes.3.meaning: empty`},
		{"no default action", `{"seccomp": {` + xsnapRule + `}}`, `seccomp.defaultAction: missing`},
		{"unknown action", `{"seccomp": {"defaultAction": "SCMP_ACT_DENY"}}`, `seccomp.defaultAction: unknown action "SCMP_ACT_DENY"; supported: SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_LOG, SCMP_ACT_TRAP`},
		{"notify", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}}`,
			`seccomp.syscalls[0].action: SCMP_ACT_NOTIFY is not supported: it needs a seccomp agent`},
		{"trace", `{"seccomp": {"defaultAction": "SCMP_ACT_TRACE"}}`, `SCMP_ACT_TRACE is not supported: it needs a ptrace tracer`},
		{"errno on allow", `{"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}}`, `errno values only go with SCMP_ACT_ERRNO`},
		{"errno too big", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000}}`, `errno 5000 is above 4095`},
		{"arch", `{"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]}}`, `seccomp.architectures[0]: unknown architecture "SCMP_ARCH_Z80"; known: SCMP_ARCH_AARCH64`},
		{"arg index", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}}`,
			`seccomp.syscalls[0].args[0].index: 6 is out of range; syscall arguments are numbered 0..5`},
		{"arg op", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_LIKE"}]}]}}`,
			`seccomp.syscalls[0].args[0].op: unknown operator "SCMP_CMP_LIKE"; supported: SCMP_CMP_EQ`},
		{"valueTwo", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_EQ"}]}]}}`,
			`only SCMP_CMP_MASKED_EQ uses valueTwo`},
		{"empty names", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}}`, `seccomp.syscalls[0].names: empty`},
		{"conflicting rules", `{"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, {"names": ["read"], "action": "SCMP_ACT_KILL_PROCESS"}]}}`,
			`seccomp.syscalls[1]: syscall "read" has action SCMP_ACT_KILL_PROCESS here but SCMP_ACT_ALLOW in seccomp.syscalls[0]`},
		{"conflicting errnos", `{"seccomp": {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}, {"names": ["write", "read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]}}`,
			`syscall "read" has action SCMP_ACT_ERRNO(errno 38) here but SCMP_ACT_ERRNO(errno 1)`},
		{"fd below 3", `{"fds": [2, 3]}`, `fds: fd 2 is outside 3..63 (0-2 are stdio and always passed)`},
		{"fd too high", `{"fds": [3, 64]}`, `fds: fd 64 is outside 3..63`},
		{"fd twice", `{"fds": [4, 3, 4]}`, `fds: fd 4 is listed twice`},
		{"fd above nofile", `{"fds": [3, 4, 9], "limits": {"nofile": 9}}`, `limits.nofile: 9 does not cover fd 9 of "fds"`},
		{"consensus", `{"consensus": true, "limits": {"memory": "max"}, "namespaces": {"net": false}}`,
			`consensus: a consensus profile bounds every resource identically on every validator: limits.memory must not be "max"; limits.pids must be > 0; a seccomp section is required; namespaces.net must be true; fix these or set "consensus": false`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := Parse([]byte(c.src), "./p.json")
			if err == nil {
				t.Fatalf("no error; profile %+v", p)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error:\n  %v\nwant it to contain:\n  %s", err, c.want)
			}
			if !strings.Contains(err.Error(), "./p.json") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte(`{"limits": {"memory": "1M", "nofile": 3, "cpuMax": "x"}}`), "p.json")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"limits.memory", "limits.nofile", "limits.cpuMax"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q misses %s", err, want)
		}
	}
}

func TestConsensusRequirementsOneByOne(t *testing.T) {
	base := `{"consensus": true, "limits": {"pids": 8, "cpuSeconds": 10}, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`
	mustParse(t, base)
	// A lifetime RLIMIT_CPU would kill a healthy long-lived worker (issue 12): consensus does not
	// require one; the engine's computron meter and cpu.max bound CPU instead.
	mustParse(t, `{"consensus": true, "limits": {"pids": 8}, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`)
	for _, c := range []struct{ src, want string }{
		{`{"consensus": true, "limits": {"pids": 8, "cpuSeconds": 10}}`, "a seccomp section is required"},
		{`{"consensus": true, "limits": {"cpuSeconds": 10}, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`, "limits.pids must be > 0"},
		{`{"consensus": true, "limits": {"pids": 8, "cpuSeconds": 10}, "namespaces": {"pid": false}, "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}`, "namespaces.pid must be true"},
	} {
		_, err := Parse([]byte(c.src), "c.json")
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), " must ")+strings.Count(err.Error(), "required") != 1 {
			t.Errorf("Parse(%s) = %v; want exactly the problem %q", c.src, err, c.want)
		}
	}
}

func TestBuiltins(t *testing.T) {
	if got := BuiltinNames(); !reflect.DeepEqual(got, []string{"consensus", "dev", "solo", "xsnap"}) {
		t.Fatalf("BuiltinNames() = %v", got)
	}
	xsnapCodes := map[string]ExitCode{
		"0": {Meaning: "success"}, "1": {Meaning: "bad usage"}, "2": {Meaning: "I/O error"},
		"11": {Meaning: "not enough memory (XS allocation meter)", MeteringFault: true, Meter: MeterMemory},
		"12": {Meaning: "stack overflow (XS stack meter)", MeteringFault: true, Meter: MeterStack},
		"15": {Meaning: "unhandled exception"}, "16": {Meaning: "no more keys"},
		"17": {Meaning: "too much computation (computron meter)", MeteringFault: true, Meter: MeterComputation},
	}
	xsnapEngine := Engine{AllocationLimit: 2 << 30, Overhead: 1 << 30, StackMargin: 128 << 10}
	want := map[string]struct {
		consensus bool
		defAction specs.LinuxSeccompAction
		limits    Limits
	}{
		"xsnap":     {false, "SCMP_ACT_ERRNO", Limits{Memory: 3 << 30, CPUMax: "150000 100000", Pids: 16, Stack: 8 << 20, Nofile: 64, FileSize: Unlimited}},
		"consensus": {true, "SCMP_ACT_KILL_PROCESS", Limits{Memory: 3 << 30, CPUMax: "150000 100000", Pids: 16, Stack: 8 << 20, Nofile: 64, FileSize: Unlimited}},
		"solo":      {false, "SCMP_ACT_ERRNO", Limits{Memory: 3 << 30, CPUMax: "150000 100000", Pids: 64, Stack: 8 << 20, Nofile: 64, FileSize: Unlimited}},
		"dev":       {false, "SCMP_ACT_ALLOW", Limits{Memory: Unlimited, CPUMax: "max 100000", Stack: 8 << 20, Nofile: 64, FileSize: Unlimited}},
	}
	for _, name := range BuiltinNames() {
		p, ok := Builtin(name)
		if !ok {
			t.Fatalf("Builtin(%q) missing", name)
		}
		w := want[name]
		if p.Name != name || p.Description == "" || p.Source != "builtin:"+name {
			t.Errorf("%s: name %q source %q description %q", name, p.Name, p.Source, p.Description)
		}
		if p.Consensus != w.consensus || p.Seccomp.DefaultAction != w.defAction || p.Limits != w.limits {
			t.Errorf("%s: consensus %v default %s limits %+v; want %v %s %+v", name, p.Consensus, p.Seccomp.DefaultAction, p.Limits, w.consensus, w.defAction, w.limits)
		}
		if !reflect.DeepEqual(p.ExitCodes, xsnapCodes) {
			t.Errorf("%s: exit codes %v", name, p.ExitCodes)
		}
		if p.Engine == nil || *p.Engine != xsnapEngine {
			t.Errorf("%s: engine %+v, want xsnap's %+v", name, p.Engine, xsnapEngine)
		}
		q, _ := Builtin(name)
		q.Limits.Pids++
		if r, _ := Builtin(name); r.Limits.Pids != p.Limits.Pids {
			t.Errorf("%s: Builtin must return a fresh copy each time", name)
		}
	}
	if _, ok := Builtin("../builtin/xsnap"); ok {
		t.Error("Builtin accepted a path")
	}
	// The allowlists: no process creation, sockets, ptrace, mounts, namespaces, bpf or keyrings
	// in xsnap and consensus; solo adds exactly process creation.
	allowed := func(name string) map[string]bool {
		p, _ := Builtin(name)
		m := map[string]bool{}
		for _, r := range p.Seccomp.Syscalls {
			if r.Action == specs.ActAllow {
				for _, n := range r.Names {
					m[n] = true
				}
			}
		}
		return m
	}
	forbidden := strings.Fields("fork vfork clone clone3 execveat socket connect ptrace mount umount2 unshare setns bpf keyctl add_key request_key")
	for _, name := range []string{"xsnap", "consensus"} {
		a := allowed(name)
		for _, f := range forbidden {
			if a[f] {
				t.Errorf("%s allows %s", name, f)
			}
		}
		for _, need := range strings.Fields("execve mmap read write rt_sigprocmask tgkill gettid getpid clock_gettime exit_group openat brk rseq futex prlimit64 ioctl") {
			if !a[need] {
				t.Errorf("%s does not allow %s", name, need)
			}
		}
	}
	if x, c := allowed("xsnap"), allowed("consensus"); !reflect.DeepEqual(x, c) {
		t.Error("xsnap and consensus allowlists differ")
	}
	s, x := allowed("solo"), allowed("xsnap")
	for n := range s {
		if !x[n] && !strings.Contains(" fork vfork clone wait4 waitid pause ", " "+n+" ") {
			t.Errorf("solo adds %s beyond process creation", n)
		}
	}
	for _, n := range strings.Fields("fork vfork clone wait4 waitid pause") {
		if !s[n] {
			t.Errorf("solo does not allow %s", n)
		}
	}
	if s["clone3"] { // its flags are in memory a filter cannot read: ENOSYS, and libc falls back to clone
		t.Error("solo allows clone3")
	}
	dev, _ := Builtin("dev")
	denied := map[string]bool{}
	for _, r := range dev.Seccomp.Syscalls {
		for _, n := range r.Names {
			denied[n] = r.Action == specs.ActErrno && *r.ErrnoRet == uint(unix.EPERM)
		}
	}
	for _, n := range strings.Fields("ptrace mount umount2 unshare setns bpf kexec_load init_module finit_module delete_module reboot swapon swapoff keyctl add_key request_key perf_event_open userfaultfd") {
		if !denied[n] {
			t.Errorf("dev does not deny %s with EPERM", n)
		}
	}
	if denied["socket"] {
		t.Error("dev denies socket")
	}
}

func TestLoad(t *testing.T) {
	p, err := Load("xsnap")
	if err != nil || p.Name != "xsnap" {
		t.Fatalf("Load(xsnap) = %v, %v", p, err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "tight.json")
	if err := os.WriteFile(path, []byte(`{"limits": {"memory": "256M"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err = Load(path)
	if err != nil || p.Name != "tight" || p.Limits.Memory != 256<<20 || p.Source != path {
		t.Fatalf("Load(file) = %+v, %v; want name tight, memory 256M", p, err)
	}
	_, err = Load(filepath.Join(dir, "missing.json"))
	if err == nil || !strings.Contains(err.Error(), "no such file") || !strings.Contains(err.Error(), "built-in profiles: consensus, dev, solo, xsnap") {
		t.Errorf("Load(missing) error = %v; want it to say no such file and list the built-ins", err)
	}
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"limits": {"memroy": 1}}`), 0o600)
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), "profile "+bad+`: unknown field "limits.memroy"`) {
		t.Errorf("Load(bad) error = %v", err)
	}
}

func TestFds(t *testing.T) {
	if p := mustParse(t, `{}`); !reflect.DeepEqual(p.Fds, []int{3, 4}) {
		t.Errorf("default fds = %v, want [3 4]", p.Fds)
	}
	p := mustParse(t, `{"fds": [8, 3, 7, 4]}`)
	if !reflect.DeepEqual(p.Fds, []int{3, 4, 7, 8}) {
		t.Errorf("fds = %v, want sorted [3 4 7 8]", p.Fds)
	}
	q := mustParse(t, `{"fds": [3, 4, 7, 8]}`)
	if p.Digest() != q.Digest() {
		t.Errorf("the order of fds changed the digest")
	}
	if d := mustParse(t, `{}`).Digest(); d == p.Digest() {
		t.Errorf("fds [3 4] and [3 4 7 8] have the same digest %s", d)
	}
	// xsnap 0.15 uses fd 7 (snapshot save) and fd 8 (snapshot load) besides 3 and 4; every
	// built-in profile is for xsnap workers.
	for _, name := range BuiltinNames() {
		b, _ := Builtin(name)
		if !reflect.DeepEqual(b.Fds, []int{3, 4, 7, 8}) {
			t.Errorf("%s fds = %v, want [3 4 7 8]", name, b.Fds)
		}
	}
	// No built-in profile has a lifetime CPU limit: it would kill a healthy long-lived worker.
	for _, name := range BuiltinNames() {
		b, _ := Builtin(name)
		if b.Limits.CPUSeconds != 0 {
			t.Errorf("%s: cpuSeconds %d; built-ins are for long-lived workers and must not set a lifetime RLIMIT_CPU", name, b.Limits.CPUSeconds)
		}
	}
}

func TestEnv(t *testing.T) {
	p := mustParse(t, `{"env": ["LANG=C.UTF-8", "TZ", "EMPTY="]}`)
	if !reflect.DeepEqual(p.Env, []string{"LANG=C.UTF-8", "TZ", "EMPTY="}) {
		t.Errorf("env = %q", p.Env)
	}
	for src, want := range map[string]string{
		`{"env": ["1X=a"]}`:       `env[0]: "1X=a": want NAME=value or NAME`,
		`{"env": ["A=1", "A"]}`:   `env[1]: A is given twice`,
		`{"env": ["BAD NAME=1"]}`: `env[0]`,
	} {
		if _, err := Parse([]byte(src), "e.json"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want %q", src, err, want)
		}
	}
	if mustParse(t, `{"env": ["A=1"]}`).Digest() == mustParse(t, `{}`).Digest() {
		t.Error("env is not in the digest")
	}
}

// The hand-written syntax checks accept and refuse what their regexps would.
func TestSyntaxChecks(t *testing.T) {
	for _, c := range []struct {
		f    func(string) bool
		in   string
		want bool
	}{
		{isEnvName, "HOME", true}, {isEnvName, "_x9", true}, {isEnvName, "9x", false}, {isEnvName, "", false}, {isEnvName, "A-B", false}, {isEnvName, "A=B", false},
		{isDigest, "sha256:" + strings.Repeat("0a", 32), true}, {isDigest, "sha256:" + strings.Repeat("0A", 32), false},
		{isDigest, "sha256:" + strings.Repeat("0", 63), false}, {isDigest, "sha1:" + strings.Repeat("0", 64), false},
		{isVersion, "6.1", true}, {isVersion, "5.15.0", true}, {isVersion, "6", false}, {isVersion, "6.1.2.3", false},
		{isVersion, "6..1", false}, {isVersion, "6.1-rc1", false}, {isVersion, "v6.1", false},
	} {
		if got := c.f(c.in); got != c.want {
			t.Errorf("%q: %v, want %v", c.in, got, c.want)
		}
	}
}

func TestEngineAndMeters(t *testing.T) {
	base := mustParse(t, `{}`)
	e := mustParse(t, `{"engine": {"allocationLimit": "2G", "overhead": "256M", "stackMargin": "128K"}}`)
	if e.Engine == nil || *e.Engine != (Engine{AllocationLimit: 2 << 30, Overhead: 256 << 20, StackMargin: 128 << 10}) {
		t.Fatalf("engine = %+v", e.Engine)
	}
	if e.Digest() == base.Digest() {
		t.Error("the engine section is not in the digest")
	}
	if mustParse(t, `{"engine": {"allocationLimit": "2G", "overhead": "512M", "stackMargin": "128K"}}`).Digest() == e.Digest() {
		t.Error("engine.overhead is not in the digest")
	}
	c, err := e.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if back := mustParse(t, string(c)); back.Digest() != e.Digest() || !strings.Contains(string(c), `"engine":{"allocationLimit":2147483648,"overhead":268435456,"stackMargin":131072}`) {
		t.Errorf("canonical %s does not round-trip", c)
	}
	m := mustParse(t, `{"exitCodes": {"11": {"meaning": "m", "meteringFault": true, "meter": "memory"}}}`)
	if m.ExitCodes["11"].Meter != MeterMemory {
		t.Errorf("meter = %q", m.ExitCodes["11"].Meter)
	}
	if m.Digest() == mustParse(t, `{"exitCodes": {"11": {"meaning": "m", "meteringFault": true}}}`).Digest() {
		t.Error("an exit code's meter is not in the digest")
	}
	for src, want := range map[string]string{
		`{"engine": {"overhead": "1M"}}`:                                                  `engine.allocationLimit: missing or 0`,
		`{"engine": {"allocationLimit": "2G", "overhead": "max"}}`:                        `engine.overhead: "max" is not an overhead`,
		`{"engine": {"allocationLimit": "2G", "stackMargin": "max"}}`:                     `engine.stackMargin: "max" is not a margin`,
		`{"engine": {"allocationLimit": "2G", "stackmargin": "1K"}}`:                      `unknown field "engine.stackmargin"`,
		`{"engine": {"allocationLimit": -5}}`:                                             `engine.allocationLimit`,
		`{"exitCodes": {"11": {"meaning": "m", "meter": "memory"}}}`:                      `exitCodes.11.meter: only a metering fault names a meter`,
		`{"exitCodes": {"11": {"meaning": "m", "meteringFault": true, "meter": "heap"}}}`: `exitCodes.11.meter: unknown meter "heap"`,
	} {
		if _, err := Parse([]byte(src), "e.json"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) = %v, want %q", src, err, want)
		}
	}
}
