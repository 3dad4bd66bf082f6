package seccompprofiles

import (
	"strings"
	"testing"
)

const pinsBase = `{"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}%s}`

func TestPinsParseAndDigest(t *testing.T) {
	parse := func(extra string) *Profile {
		t.Helper()
		p, err := Parse([]byte(strings.Replace(pinsBase, "%s", extra, 1)), "pins.json")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	none := parse("")
	empty := parse(`, "pins": {}`)
	if empty.Pins != nil || empty.Digest() != none.Digest() {
		t.Errorf(`"pins": {} must mean no pins (digest %s vs %s)`, empty.Digest(), none.Digest())
	}
	if c, _ := none.Canonical(); strings.Contains(string(c), "pins") {
		t.Errorf("canonical form without pins mentions them: %s", c)
	}
	d := "sha256:" + strings.Repeat("ab", 32)
	pinned := parse(`, "pins": {"workerDigest": "` + d + `", "kernelMin": "6.1", "facts": {"vm.overcommit_memory": "2", "mm.pageSize": "4096"}}`)
	if pinned.Pins == nil || pinned.Pins.WorkerDigest != d || pinned.Pins.KernelMin != "6.1" || pinned.Pins.Facts["vm.overcommit_memory"] != "2" {
		t.Fatalf("pins %+v", pinned.Pins)
	}
	if pinned.Digest() == none.Digest() {
		t.Error("pins are not in the digest")
	}
	other := parse(`, "pins": {"workerDigest": "` + d + `", "kernelMin": "6.1", "facts": {"mm.pageSize": "4096", "vm.overcommit_memory": "1"}}`)
	if other.Digest() == pinned.Digest() {
		t.Error("a different pinned value kept the digest")
	}
	// The canonical form parses back to the same digest.
	c, _ := pinned.Canonical()
	back, err := Parse(c, "canonical")
	if err != nil || back.Digest() != pinned.Digest() {
		t.Errorf("canonical round trip: %v, %s vs %s", err, back.Digest(), pinned.Digest())
	}
}

func TestPinsValidation(t *testing.T) {
	for _, c := range []struct{ pins, want string }{
		{`{"workerDigest": "sha256:abc"}`, "pins.workerDigest"},
		{`{"workerDigest": "SHA256:` + strings.Repeat("AB", 32) + `"}`, "pins.workerDigest"},
		{`{"kernelMin": "six"}`, "pins.kernelMin"},
		{`{"kernelMin": "6"}`, "pins.kernelMin"},
		{`{"facts": {"vm.nope": "1"}}`, "pins.facts.vm.nope: unknown host fact"},
		{`{"facts": {"vm.overcommit_memory": ""}}`, "pins.facts.vm.overcommit_memory: empty value"},
		{`{"hostFactsDigest": "x"}`, `unknown field "pins.hostFactsDigest"`},
	} {
		_, err := Parse([]byte(strings.Replace(pinsBase, "%s", `, "pins": `+c.pins, 1)), "pins.json")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("pins %s: error %v, want %q", c.pins, err, c.want)
		}
	}
}
