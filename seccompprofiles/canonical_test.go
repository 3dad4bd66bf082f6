package seccompprofiles

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// builtinDigests pins the built-in profiles. Validators compare digests, so a change here is a
// change every operator must be told about: update the value only together with the profile.
var builtinDigests = map[string]string{
	"consensus": "sha256:13a26e476e369fa4ba114462caaa47af4afb3ac03dee8332ba418f65d6deaa8f",
	"dev":       "sha256:fa10f7c934fbc18ef55c16031afa31f84b4841296ce2b23086ea6415948e3759",
	"solo":      "sha256:b86b724d97414f397ba3dac4fcace28c547b9ea869ddefe3dcb5046e15e819d2",
	"xsnap":     "sha256:6f6643a9d180054c90a32608b991994ca7aeb5bfea9537882f186c0b07ea5e4c",
}

func TestBuiltinDigestsStable(t *testing.T) {
	for _, name := range BuiltinNames() {
		p, _ := Builtin(name)
		if got := p.Digest(); got != builtinDigests[name] {
			t.Errorf("built-in %s digest = %s, pinned %s (update builtinDigests only if the profile change is intended)", name, got, builtinDigests[name])
		}
		if q, _ := Builtin(name); q.Digest() != p.Digest() {
			t.Errorf("%s: digest not deterministic", name)
		}
	}
}

const profileA = `{
  "name": "a", "description": "first spelling",
  "limits": {"memory": "1G", "stack": "8M", "cpuSeconds": 30, "pids": 10},
  "seccomp": {
    "defaultAction": "SCMP_ACT_ERRNO",
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "syscalls": [
      {"names": ["write", "read", "exit_group"], "action": "SCMP_ACT_ALLOW"},
      {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 3, "op": "SCMP_CMP_LE"}]},
      {"names": ["kill"], "action": "SCMP_ACT_KILL"}
    ]
  },
  "exitCodes": {"17": {"meaning": "compute", "meteringFault": true}, "2": {"meaning": "io"}, "11": {"meaning": "alloc", "meteringFault": true}}
}`

// The same profile: other name and description, keys and rules reordered, sizes in bytes and
// other units, names reordered and repeated, defaults written out, KILL spelled KILL_THREAD.
const profileB = `{"exitCodes": {"2": {"meaning": "io"}, "11": {"meteringFault": true, "meaning": "alloc"}, "17": {"meaning": "compute", "meteringFault": true}},
  "seccomp": {"syscalls": [
      {"action": "SCMP_ACT_KILL_THREAD", "names": ["kill"]},
      {"names": ["ioctl"], "action": "SCMP_ACT_ALLOW", "args": [{"op": "SCMP_CMP_LE", "index": 0, "value": 3}, {"index": 1, "value": 21505, "op": "SCMP_CMP_EQ"}]},
      {"names": ["read", "exit_group", "write", "read"], "action": "SCMP_ACT_ALLOW"}],
    "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    "defaultErrnoRet": 1, "defaultAction": "SCMP_ACT_ERRNO"},
  "namespaces": {"user": "auto", "pid": true},
  "limits": {"pids": 10, "cpuSeconds": 30, "memory": 1073741824, "stack": "8192KiB", "swap": 0, "cpuMax": "max  100000", "fileSize": "max"},
  "consensus": false, "name": "b"}`

func TestDigestIgnoresSpelling(t *testing.T) {
	a, b := mustParse(t, profileA), mustParse(t, profileB)
	if a.Digest() != b.Digest() {
		ca, _ := a.Canonical()
		cb, _ := b.Canonical()
		t.Fatalf("equal profiles, different digests:\n%s\n%s", ca, cb)
	}
	if !strings.HasPrefix(a.Digest(), "sha256:") || len(a.Digest()) != len("sha256:")+64 {
		t.Errorf("digest %q is not sha256:<64 hex>", a.Digest())
	}
}

func TestCanonicalForm(t *testing.T) {
	c, err := mustParse(t, profileA).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	s := string(c)
	for _, want := range []string{
		`{"consensus":false,"env":[],"exitCodes":{"2":{"meaning":"io"},"11":{`, // numeric key order
		`"fds":[3,4],"limits"`,
		`"limits":{"core":0,"cpuMax":"max 100000","cpuSeconds":30,"fileSize":"max","memory":1073741824,`,
		`"architectures":["SCMP_ARCH_X86","SCMP_ARCH_X86_64"]`,
		`{"action":"SCMP_ACT_ALLOW","names":["exit_group","read","write"]}`,
		`{"action":"SCMP_ACT_KILL_THREAD","names":["kill"]}`,
		`"defaultErrnoRet":1`,
		`"args":[{"index":0,"op":"SCMP_CMP_LE","value":3},{"index":1,"op":"SCMP_CMP_EQ","value":21505}]`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("canonical form lacks %s:\n%s", want, s)
		}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, c); err != nil || !bytes.Equal(compact.Bytes(), c) {
		t.Errorf("canonical form has insignificant whitespace (or is not JSON: %v): %s", err, s)
	}
	if strings.Contains(s, `"name"`) || strings.Contains(s, "description") || strings.Contains(s, "first spelling") {
		t.Errorf("canonical form includes name or description: %s", s)
	}
}

func TestDigestChangesWithEveryLimit(t *testing.T) {
	base := mustParse(t, profileA)
	d := base.Digest()
	mutations := map[string]func(p *Profile){
		"memory":     func(p *Profile) { p.Limits.Memory++ },
		"swap":       func(p *Profile) { p.Limits.Swap = Unlimited },
		"cpuMax":     func(p *Profile) { p.Limits.CPUMax = "50000 100000" },
		"cpuSeconds": func(p *Profile) { p.Limits.CPUSeconds++ },
		"pids":       func(p *Profile) { p.Limits.Pids++ },
		"stack":      func(p *Profile) { p.Limits.Stack += 4096 },
		"nofile":     func(p *Profile) { p.Limits.Nofile++ },
		"core":       func(p *Profile) { p.Limits.Core = 1 },
		"fileSize":   func(p *Profile) { p.Limits.FileSize = 0 },
		"consensus":  func(p *Profile) { p.Consensus = true },
		"namespace":  func(p *Profile) { p.Namespaces.IPC = false },
		"user ns":    func(p *Profile) { p.Namespaces.User = UserAlways },
		"exit code":  func(p *Profile) { p.ExitCodes["2"] = ExitCode{Meaning: "io", MeteringFault: true} },
		"default":    func(p *Profile) { p.Seccomp.DefaultAction = specs.ActKillProcess; p.Seccomp.DefaultErrnoRet = nil },
		"errno":      func(p *Profile) { p.Seccomp.DefaultErrnoRet = ptr(uint(38)) },
		"rule name":  func(p *Profile) { p.Seccomp.Syscalls[0].Names = append(p.Seccomp.Syscalls[0].Names, "close") },
		"arg value":  func(p *Profile) { p.Seccomp.Syscalls[1].Args[0].Value++ },
		"arch":       func(p *Profile) { p.Seccomp.Architectures = p.Seccomp.Architectures[:1] },
	}
	for name, mutate := range mutations {
		p := mustParse(t, profileA)
		mutate(p)
		if p.Digest() == d {
			t.Errorf("changing %s did not change the digest", name)
		}
	}
	renamed := mustParse(t, profileA)
	renamed.Name, renamed.Description = "other", "other"
	if renamed.Digest() != d {
		t.Error("renaming changed the digest; name and description are not part of it")
	}
}

func TestCanonicalRoundTrip(t *testing.T) {
	profiles := []*Profile{mustParse(t, profileA), mustParse(t, `{}`)}
	for _, name := range BuiltinNames() {
		p, _ := Builtin(name)
		profiles = append(profiles, p)
	}
	for _, p := range profiles {
		c, err := p.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		q, err := Parse(c, "canonical")
		if err != nil {
			t.Fatalf("canonical form of %s does not parse: %v\n%s", p.Label(), err, c)
		}
		if q.Digest() != p.Digest() {
			t.Errorf("%s: round trip changed the digest", p.Label())
		}
		c2, _ := q.Canonical()
		if !bytes.Equal(c, c2) {
			t.Errorf("%s: canonical form is not a fixed point:\n%s\n%s", p.Label(), c, c2)
		}
	}
}
