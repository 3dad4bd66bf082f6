package seccompprofiles

import (
	"testing"
)

// FuzzParse: Parse never panics, and any accepted profile's canonical form parses back to the
// same digest.
func FuzzParse(f *testing.F) {
	f.Add([]byte(profileA))
	f.Add([]byte(`{"limits": {"memory": "64M", "stack": "max"}}`))
	for _, name := range BuiltinNames() {
		data, _ := builtinFS.ReadFile("builtin/" + name + ".json")
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "fuzz.json")
		if err != nil {
			if p != nil {
				t.Fatalf("Parse returned a profile with an error: %v", err)
			}
			return
		}
		c, err := p.Canonical()
		if err != nil {
			t.Fatalf("accepted profile has no canonical form: %v", err)
		}
		q, err := Parse(c, "canonical.json")
		if err != nil {
			t.Fatalf("canonical form rejected: %v\n%s", err, c)
		}
		if q.Digest() != p.Digest() {
			t.Fatalf("digest changed through the canonical form:\n%s", c)
		}
	})
}
