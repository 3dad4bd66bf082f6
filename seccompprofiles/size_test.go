package seccompprofiles

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]Size{
		"0": 0, "1048576": 1 << 20, "512K": 512 << 10, "512k": 512 << 10, "64M": 64 << 20,
		"2G": 2 << 30, "1Gi": 1 << 30, "1GiB": 1 << 30, "1gib": 1 << 30, "1GB": 1 << 30,
		"3T": 3 << 40, "1P": 1 << 50, "100B": 100, " 8M ": 8 << 20, "max": Unlimited, "MAX": Unlimited,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":          "expected a byte count",
		"64Q":       `unknown unit "q"`,
		"1.5G":      `unknown unit ".5g"`,
		"-1":        "expected a byte count",
		"1iB":       `unknown unit "ib"`,
		"8Mx":       `unknown unit "mx"`,
		"16384P":    "larger than",
		"unlimited": "expected a byte count",
	}
	for in, want := range bad {
		_, err := ParseSize(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSize(%q) error = %v; want it to mention %q", in, err, want)
		}
	}
}

func TestSizeJSON(t *testing.T) {
	var s Size
	for in, want := range map[string]Size{`1073741824`: 1 << 30, `"1G"`: 1 << 30, `"max"`: Unlimited, `0`: 0} {
		if err := json.Unmarshal([]byte(in), &s); err != nil || s != want {
			t.Errorf("unmarshal %s = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{`-1`, `1.5`, `1e9`, `true`, `"64Q"`} {
		if err := json.Unmarshal([]byte(in), &s); err == nil {
			t.Errorf("unmarshal %s: no error", in)
		}
	}
	for s, want := range map[Size]string{1 << 30: `1073741824`, Unlimited: `"max"`, 0: `0`} {
		b, err := json.Marshal(s)
		if err != nil || string(b) != want {
			t.Errorf("marshal %d = %s, %v; want %s", s, b, err, want)
		}
	}
	if _, err := json.Marshal(Size(-2)); err == nil {
		t.Error("marshal Size(-2): no error")
	}
	for s, want := range map[Size]string{1 << 30: "1G", 1536 << 20: "1536M", 1000: "1000", Unlimited: "max", 0: "0", 64 << 10: "64K"} {
		if s.String() != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), s.String(), want)
		}
	}
}
