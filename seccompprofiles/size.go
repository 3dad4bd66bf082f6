package seccompprofiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits are the accepted unit letters, all binary (K = 1024).
var sizeUnits = map[byte]uint{'k': 10, 'm': 20, 'g': 30, 't': 40, 'p': 50}

const sizeSyntax = `a byte count (1048576), a number with a binary unit K, M, G, T or P ` +
	`(case-insensitive, optional "i", "iB" or "B": "512K", "64M", "1Gi", "2GiB"), or "max"`

// ParseSize parses the string form of a Size: "max", a plain byte count, or a number with a
// binary unit suffix (see Size).
func ParseSize(s string) (Size, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "max" {
		return Unlimited, nil
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: expected %s", s, sizeSyntax)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: number out of range", s)
	}
	unit := strings.TrimSpace(t[i:])
	var shift uint
	if unit != "" {
		if sh, ok := sizeUnits[unit[0]]; ok {
			shift = sh
			unit = unit[1:]
		}
		switch unit {
		case "", "b":
		case "i", "ib":
			if shift == 0 {
				return 0, fmt.Errorf("invalid size %q: unknown unit %q; accepted: %s", s, t[i:], sizeSyntax)
			}
		default:
			return 0, fmt.Errorf("invalid size %q: unknown unit %q; accepted: %s", s, t[i:], sizeSyntax)
		}
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("invalid size %q: larger than %d bytes; use \"max\" for no limit", s, int64(math.MaxInt64))
	}
	return Size(n << shift), nil
}

// UnmarshalJSON accepts a non-negative integer byte count or a string (see ParseSize).
func (s *Size) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var str string
		if err := json.Unmarshal(data, &str); err != nil {
			return err
		}
		v, err := ParseSize(str)
		if err != nil {
			return err
		}
		*s = v
		return nil
	}
	if string(data) == "null" {
		return fmt.Errorf("invalid size null: expected %s", sizeSyntax)
	}
	n, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil {
		return fmt.Errorf("invalid size %s: expected %s", data, sizeSyntax)
	}
	if n < 0 {
		return fmt.Errorf("invalid size %d: negative; use \"max\" for no limit", n)
	}
	*s = Size(n)
	return nil
}

// MarshalJSON writes the byte count as a number, or "max" for Unlimited (the canonical form).
func (s Size) MarshalJSON() ([]byte, error) {
	if s == Unlimited {
		return []byte(`"max"`), nil
	}
	if s < 0 {
		return nil, fmt.Errorf("invalid size %d: negative and not Unlimited", int64(s))
	}
	return strconv.AppendInt(nil, int64(s), 10), nil
}

// String is the human form: "max", the largest exact binary unit ("512M", "1G"), or bytes.
func (s Size) String() string {
	if s == Unlimited {
		return "max"
	}
	if s > 0 {
		for _, u := range []struct {
			shift  uint
			letter string
		}{{50, "P"}, {40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
			if s%(1<<u.shift) == 0 {
				return strconv.FormatInt(int64(s)>>u.shift, 10) + u.letter
			}
		}
	}
	return strconv.FormatInt(int64(s), 10)
}
