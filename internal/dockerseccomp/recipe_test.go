package dockerseccomp

import (
	"bytes"
	"os"
	"slices"
	"testing"
)

func load(t *testing.T, path string) (*Profile, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return p, data
}

// TestRecipeFresh: contrib/docker-seccomp.json is what Recipe makes of the checked-in moby default
// (go generate ./internal/dockerseccomp).
func TestRecipeFresh(t *testing.T) {
	def, _ := load(t, "../../contrib/seccomp/moby-default.json")
	_, have := load(t, "../../contrib/docker-seccomp.json")
	want, err := Recipe(def).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Fatal("contrib/docker-seccomp.json is stale: run go generate ./internal/dockerseccomp")
	}
}

// allowed says whether the resolved profile allows name unconditionally, with a condition, or
// not at all (the default action).
func allowed(o *OCI, name string) (any, cond bool) {
	for _, r := range o.Syscalls {
		if slices.Contains(r.Names, name) && r.Action == "SCMP_ACT_ALLOW" {
			if len(r.Args) == 0 {
				return true, false
			}
			cond = true
		}
	}
	return false, cond
}

// TestResolveDockerDefault: for a container with Docker's capabilities on amd64, Docker's default
// lets clone through only without namespace flags, answers clone3 with ENOSYS and refuses mount;
// the recipe allows exactly vatrun's needs more, and every other rule is Docker's.
func TestResolveDockerDefault(t *testing.T) {
	def, _ := load(t, "../../contrib/seccomp/moby-default.json")
	o, err := Resolve(def, DockerCaps, "amd64", "6.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Architectures, []string{"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}) {
		t.Errorf("architectures %v", o.Architectures)
	}
	if any, cond := allowed(o, "clone"); any || !cond {
		t.Errorf("docker default: clone allowed unconditionally %v, conditionally %v; want only with a flag condition", any, cond)
	}
	for _, n := range []string{"mount", "pivot_root", "sethostname", "unshare", "clone3"} {
		if any, cond := allowed(o, n); any || cond {
			t.Errorf("docker default allows %s without CAP_SYS_ADMIN", n)
		}
	}
	withAdmin, err := Resolve(def, append(slices.Clone(DockerCaps), "CAP_SYS_ADMIN"), "amd64", "6.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if any, _ := allowed(withAdmin, "mount"); !any {
		t.Error("docker default with CAP_SYS_ADMIN does not allow mount")
	}
	rec, err := Resolve(Recipe(def), DockerCaps, "amd64", "6.1.0")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range VatrunNeeds {
		if any, _ := allowed(rec, n); !any {
			t.Errorf("recipe does not allow %s", n)
		}
	}
	for _, n := range []string{"unshare", "setns", "bpf", "perf_event_open", "open_tree", "move_mount", "fsopen"} {
		if any, cond := allowed(rec, n); any || cond {
			t.Errorf("recipe allows %s, which vatrun does not need", n)
		}
	}
	// Every name Docker allows stays allowed, and nothing but VatrunNeeds is added.
	names := func(o *OCI) map[string]bool {
		m := map[string]bool{}
		for _, r := range o.Syscalls {
			if r.Action == "SCMP_ACT_ALLOW" {
				for _, n := range r.Names {
					m[n] = true
				}
			}
		}
		return m
	}
	d, r := names(o), names(rec)
	for n := range d {
		if !r[n] {
			t.Errorf("recipe drops %s", n)
		}
	}
	for n := range r {
		if !d[n] && !slices.Contains(VatrunNeeds, n) {
			t.Errorf("recipe adds %s", n)
		}
	}
}
