package sandbox

import (
	"crypto/sha256"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/hostfacts"
)

// TestCSHA256 checks prelaunch.c's SHA-256 (the launch cache's key and integrity trailer) against
// crypto/sha256 at every length around the block and padding boundaries, and on random data.
func TestCSHA256(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for n := 0; n < 300; n++ {
		b := make([]byte, n)
		rng.Read(b)
		if got, want := cSHA256(b), sha256.Sum256(b); got != want {
			t.Fatalf("length %d: C %x, Go %x", n, got, want)
		}
	}
	big := make([]byte, 1<<20+13)
	rng.Read(big)
	if got, want := cSHA256(big), sha256.Sum256(big); got != want {
		t.Fatalf("1 MiB: C %x, Go %x", got, want)
	}
}

// TestInvocationEncoding pins the invocation's layout that prelaunch.c parses.
func TestInvocationEncoding(t *testing.T) {
	v := invocation{flags: 0x20000, setgroupsDeny: true, uidMap: "0 0 1\n", gidMap: "", fds: []int32{-1, 1, 2, -2},
		dir: "/", config: []byte{1, 2}, argv: []string{"/w", "w"}, env: []string{"A=1"}}
	got := v.encode()
	want := []byte{
		0x56, 0x52, 0x4c, 0x49, 2, 0, 0, 0, // magic "VRLI", version 2
		0, 0, 2, 0, 0, 0, 0, 0, // flags
		1, 0, 0, 0, // setgroups deny
		6, 0, 0, 0, '0', ' ', '0', ' ', '1', '\n', 0, 0, 0, 0, // uid map, gid map
		4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 2, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, // fds
		1, 0, 0, 0, '/', 2, 0, 0, 0, 1, 2, // dir, config
		2, 0, 0, 0, 2, 0, 0, 0, '/', 'w', 1, 0, 0, 0, 'w', // argv
		0, 0, 0, 0, // append args
		1, 0, 0, 0, 3, 0, 0, 0, 'A', '=', '1', // env
	}
	if string(got) != string(want) {
		t.Fatalf("encoding\n got % x\nwant % x", got, want)
	}
}

// TestCacheBaseAgrees: the launch cache's C constructor and the file-hash cache find vatrun's
// cache directory alike, for every way the environment can name it (or not).
func TestCacheBaseAgrees(t *testing.T) {
	for _, env := range [][]string{
		{"VATRUN_CACHE_DIR=/srv/vc", "XDG_CACHE_HOME=/x", "HOME=/h"},
		{"VATRUN_CACHE_DIR=off", "HOME=/h"},
		{"VATRUN_CACHE_DIR=relative", "HOME=/h"},
		{"VATRUN_CACHE_DIR=", "XDG_CACHE_HOME=/x", "HOME=/h"},
		{"XDG_CACHE_HOME=/x", "HOME=/h"},
		{"XDG_CACHE_HOME=rel", "HOME=/h"},
		{"HOME=/home/v"},
		{"HOME="},
		{"PATH=/bin"},
		{},
	} {
		for _, euid := range []int{0, 1000} {
			getenv := func(k string) string {
				for _, e := range env {
					if name, v, _ := strings.Cut(e, "="); name == k {
						return v
					}
				}
				return ""
			}
			want := hostfacts.CacheBase(getenv, euid)
			got := cCacheBase(env, euid)
			if got != "" {
				got = filepath.Clean(got)
			}
			if got != want {
				t.Errorf("env %q euid %d: C %q, hostfacts %q", env, euid, got, want)
			}
		}
	}
}
