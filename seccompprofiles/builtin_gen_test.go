package seccompprofiles

import (
	"reflect"
	"testing"
)

func TestProtoGeneratedEqualsParsed(t *testing.T) {
	for _, n := range BuiltinNames() {
		a, _ := Builtin(n)
		b, _ := BuiltinParsed(n)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: generated != parsed\n%+v\n%+v", n, a, b)
		}
		if a.Digest() != b.Digest() {
			t.Errorf("%s: digest", n)
		}
	}
}
