package seccompprofiles

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
)

// Canonical returns the canonical JSON of the resolved profile, the input of Digest: defaults
// filled, object keys sorted (exitCodes keys numerically), no insignificant whitespace, sizes as
// byte counts (Unlimited as "max"), syscall names sorted and de-duplicated within a rule, args
// sorted, rules sorted, architectures sorted and de-duplicated, SCMP_ACT_KILL spelled
// SCMP_ACT_KILL_THREAD (its meaning). Name, Description and Source are left out:
// the digest covers only what shapes the sandbox, so renaming or re-describing a profile does
// not change it. Canonical output parses back (with Parse) to a profile with the same digest.
func (p *Profile) Canonical() ([]byte, error) {
	c := *p
	c.Name, c.Description = "", ""
	if p.Seccomp != nil {
		c.Seccomp = p.Seccomp.Canonical()
	}
	raw, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("profile %s: canonical form: %w", p.Label(), err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, fmt.Errorf("profile %s: canonical form: %w", p.Label(), err)
	}
	if m, ok := tree.(map[string]any); ok {
		delete(m, "name") // encoded even when empty (no omitempty)
		delete(m, "description")
	}
	var out bytes.Buffer
	if err := writeCanonical(&out, tree); err != nil {
		return nil, fmt.Errorf("profile %s: canonical form: %w", p.Label(), err)
	}
	return out.Bytes(), nil
}

// Digest is "sha256:" + the hex SHA-256 of Canonical. Two validators whose profiles have the
// same digest run identical sandboxes. It returns "" only if the profile cannot be encoded
// (a negative Size other than Unlimited, which Validate rejects).
func (p *Profile) Digest() string {
	if d, ok := builtinDigest(p); ok {
		return d
	}
	return p.computeDigest()
}

// computeDigest is the sha256 of the profile's canonical form.
func (p *Profile) computeDigest() string {
	c, err := p.Canonical()
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(c)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Canonical returns the seccomp section in canonical order: SCMP_ACT_KILL spelled
// SCMP_ACT_KILL_THREAD, architectures sorted and de-duplicated, each rule's names and args sorted,
// rules sorted. Compiling it gives profiles with the same digest the same program.
func (s *Seccomp) Canonical() *Seccomp {
	c := *s
	c.DefaultAction = CanonicalAction(s.DefaultAction)
	c.Architectures = slices.Compact(slices.Sorted(slices.Values(s.Architectures)))
	c.Syscalls = make([]SeccompSyscall, len(s.Syscalls))
	keys := make([]string, len(s.Syscalls))
	for i, r := range s.Syscalls {
		r.Action = CanonicalAction(r.Action)
		r.Names = slices.Compact(slices.Sorted(slices.Values(r.Names)))
		r.Args = slices.Clone(r.Args)
		sort.Slice(r.Args, func(a, b int) bool {
			x, y := r.Args[a], r.Args[b]
			if x.Index != y.Index {
				return x.Index < y.Index
			}
			if x.Op != y.Op {
				return x.Op < y.Op
			}
			if x.Value != y.Value {
				return x.Value < y.Value
			}
			return x.ValueTwo < y.ValueTwo
		})
		c.Syscalls[i] = r
		k, _ := json.Marshal(r)
		keys[i] = string(k)
	}
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })
	sorted := make([]SeccompSyscall, len(idx))
	for i, j := range idx {
		sorted[i] = c.Syscalls[j]
	}
	c.Syscalls = sorted
	return &c
}

// keyLess orders object keys: two decimal numbers numerically (exitCodes), otherwise bytewise.
func keyLess(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil && x != y {
		return x < y
	}
	return a < b
}

func writeCanonical(out *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keyLess(keys[i], keys[j]) })
		out.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				out.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			out.Write(kb)
			out.WriteByte(':')
			if err := writeCanonical(out, t[k]); err != nil {
				return err
			}
		}
		out.WriteByte('}')
	case []any:
		out.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				out.WriteByte(',')
			}
			if err := writeCanonical(out, e); err != nil {
				return err
			}
		}
		out.WriteByte(']')
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		out.Write(b)
	}
	return nil
}
