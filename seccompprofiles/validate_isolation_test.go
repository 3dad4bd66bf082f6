package seccompprofiles

import (
	"strings"
	"testing"
)

// TestValidateIsolation: a consensus profile cannot accept two isolations; the no-namespace mode
// has no mount namespace for mounts or tmp; unknown values are refused; the field is in the
// digest, and absent it leaves the built-in digests as they were.
func TestValidateIsolation(t *testing.T) {
	base, err := Load("xsnap")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		iso       Isolation
		consensus bool
		tmp       Size
		bad       string
	}{
		{IsolationLandlock, false, 0, ""},
		{IsolationNamespacesOrLandlock, false, 0, ""},
		{IsolationLandlock, true, 0, ""},
		{IsolationNamespacesOrLandlock, true, 0, "consensus profile chooses one"},
		{IsolationLandlock, false, 1 << 20, "no mount namespace"},
		{"sometimes", false, 0, "unknown value"},
	} {
		p := *base
		p.Isolation, p.Consensus, p.Tmp = tc.iso, tc.consensus, tc.tmp
		err := p.Validate()
		if tc.bad == "" && err != nil || tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%q consensus=%v tmp=%v: %v, want %q", tc.iso, tc.consensus, tc.tmp, err, tc.bad)
		}
	}
	p := *base
	p.Isolation = IsolationLandlock
	if p.Digest() == base.Digest() {
		t.Error("isolation is not in the digest")
	}
	p.Isolation = ""
	if p.Digest() != base.Digest() {
		t.Error("an absent isolation changes the digest")
	}
}
