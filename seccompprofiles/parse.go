package seccompprofiles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Default values. A field absent from a profile file takes its default; a field that is present
// is taken as written (so "fileSize": 0 really means 0, and "pids": 0 means unlimited).
//
//	limits.memory      1G            (cgroup memory.max; "max" = unlimited, minimum 4M)
//	limits.swap        0             (no swap)
//	limits.cpuMax      "max 100000"  (no cgroup CPU quota, 100 ms period)
//	limits.cpuSeconds  0             (no RLIMIT_CPU)
//	limits.pids        0             (no pids.max)
//	limits.stack       8M            (RLIMIT_STACK, 64K..memory)
//	limits.nofile      64            (RLIMIT_NOFILE soft = hard; 0 = inherited, else at least 8)
//	limits.core        0             (no core dumps)
//	limits.fileSize    "max"         (no RLIMIT_FSIZE)
//	namespaces         pid, net, ipc, uts, mount all true; user "auto"
//	fds                [3, 4]        (the worker's pipes; xsnap 0.15 needs [3, 4, 7, 8])
//	env                []            (the worker's environment: empty)
//	mounts             []            (no paths besides the worker's own)
//	tmp                0             (no /tmp)
//	seccomp            none (no filter)
//	exitCodes          none
//	pins               none          (no host fact or worker digest required)
//	engine             none          (no engine caps stated; see docs/limits.md)
//	consensus          false
//
// Inside a seccomp section, an SCMP_ACT_ERRNO action without errnoRet (or defaultErrnoRet)
// returns EPERM (1), as in the OCI runtime spec.
const (
	DefaultMemory   Size   = 1 << 30
	DefaultSwap     Size   = 0
	DefaultCPUMax   string = "max 100000"
	DefaultStack    Size   = 8 << 20
	DefaultNofile   uint64 = 64
	DefaultCore     Size   = 0
	DefaultFileSize Size   = Unlimited
	// DefaultErrno is the errno of SCMP_ACT_ERRNO when the profile gives none (EPERM).
	DefaultErrno uint = 1
)

// Default returns a profile with every default filled in and no seccomp filter.
func Default() *Profile {
	return &Profile{
		Limits: Limits{
			Memory:   DefaultMemory,
			Swap:     DefaultSwap,
			CPUMax:   DefaultCPUMax,
			Stack:    DefaultStack,
			Nofile:   DefaultNofile,
			Core:     DefaultCore,
			FileSize: DefaultFileSize,
		},
		Namespaces: Namespaces{Pid: true, Net: true, IPC: true, UTS: true, Mount: true, User: UserAuto},
		Fds:        []int{3, 4},
		Env:        []string{},
		Mounts:     []MountPoint{},
	}
}

// Parse reads a profile from JSON strictly: unknown or duplicate fields, trailing data and
// values of the wrong type are errors naming the field path and source (the file name used in
// messages). Absent fields take the defaults listed at DefaultMemory; the result is validated
// (see Validate). Parse does not compile the seccomp section: seccompprofiles/filter.Compile
// does, and reports what only libseccomp knows (syscall names unknown on this host, conflicting
// rules, a program over the kernel's size limit).
func Parse(data []byte, source string) (*Profile, error) {
	prefix := "profile " + source
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, describeJSONError(prefix, data, io.EOF)
	}
	// Syntax first, on the whole input, so positions are exact (and trailing data is caught).
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		return nil, describeJSONError(prefix, data, err)
	}
	if err := checkStrict(data, reflect.TypeFor[Profile](), ""); err != nil {
		return nil, describeJSONError(prefix, data, err)
	}
	p := Default()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return nil, describeJSONError(prefix, data, err)
	}
	p.Source = source
	p.fillDefaults()
	if err := p.validate(prefix); err != nil {
		return nil, err
	}
	return p, nil
}

// fillDefaults resolves the defaults that depend on other fields and normalises spellings that
// mean the same thing.
func (p *Profile) fillDefaults() {
	if p.Fds == nil {
		p.Fds = []int{3, 4}
	}
	if p.Env == nil {
		p.Env = []string{}
	}
	if p.Mounts == nil {
		p.Mounts = []MountPoint{}
	}
	sort.Ints(p.Fds)
	if p.Pins != nil && p.Pins.WorkerDigest == "" && p.Pins.KernelMin == "" && len(p.Pins.Facts) == 0 {
		p.Pins = nil // "pins": {} pins nothing: the same digest as no pins
	}
	if f := strings.Fields(p.Limits.CPUMax); len(f) == 1 && f[0] == "max" {
		p.Limits.CPUMax = DefaultCPUMax
	} else if len(f) > 0 {
		p.Limits.CPUMax = strings.Join(f, " ")
	}
	s := p.Seccomp
	if s == nil {
		return
	}
	if s.DefaultAction == specs.ActErrno && s.DefaultErrnoRet == nil {
		s.DefaultErrnoRet = ptr(DefaultErrno)
	}
	for i := range s.Syscalls {
		r := &s.Syscalls[i]
		if r.Action == specs.ActErrno && r.ErrnoRet == nil {
			r.ErrnoRet = ptr(DefaultErrno)
		}
	}
}

func ptr[T any](v T) *T { return &v }

var sizeType = reflect.TypeFor[Size]()

// checkStrict walks raw JSON alongside the Go type it will be decoded into and reports, with the
// field path, unknown fields (exact-case match only: encoding/json would otherwise accept
// "Memory" for "memory"), duplicate keys and invalid sizes.
func checkStrict(raw []byte, t reflect.Type, path string) error {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		if t == sizeType {
			return &fieldError{path, `null is not a size; write a byte count, a size such as "64M", or "max"`}
		}
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == sizeType:
		var s Size
		if err := s.UnmarshalJSON(raw); err != nil {
			return &fieldError{path, err.Error()}
		}
		return nil
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return walkObject(raw, t, path)
	case t.Kind() == reflect.Slice:
		dec := json.NewDecoder(bytes.NewReader(raw))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return nil // the typed decode reports the mismatch with its path
		}
		for i := 0; dec.More(); i++ {
			var elem json.RawMessage
			if err := dec.Decode(&elem); err != nil {
				return err
			}
			if err := checkStrict(elem, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func walkObject(raw []byte, t reflect.Type, path string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // the typed decode reports the mismatch with its path
	}
	var fields map[string]reflect.Type
	var known []string
	if t.Kind() == reflect.Struct {
		fields = map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[name] = f.Type
			known = append(known, name)
		}
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return err
		}
		sub := key
		if path != "" {
			sub = path + "." + key
		}
		if seen[key] {
			return &fieldError{sub, "appears twice; keep one"}
		}
		seen[key] = true
		var et reflect.Type
		if fields != nil {
			ft, ok := fields[key]
			if !ok {
				return &fieldError{"", fmt.Sprintf("unknown field %q; known fields%s: %s", sub, inWhere(path), strings.Join(known, ", "))}
			}
			et = ft
		} else {
			et = t.Elem()
		}
		if err := checkStrict(val, et, sub); err != nil {
			return err
		}
	}
	return nil
}

func inWhere(path string) string {
	if path == "" {
		return ""
	}
	return " of " + path
}

type fieldError struct{ path, msg string }

func (e *fieldError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

// describeJSONError turns encoding/json errors into messages naming the file, the position or
// field, and what was expected.
func describeJSONError(prefix string, data []byte, err error) error {
	var fe *fieldError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &fe):
		return fmt.Errorf("%s: %w", prefix, err)
	case errors.As(err, &se):
		line, col := lineCol(data, se.Offset)
		return fmt.Errorf("%s: line %d, column %d: invalid JSON: %w", prefix, line, col, err)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Errorf("%s: field %s: got JSON %s, want %s", prefix, field, te.Value, goTypeWords(te.Type))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: empty or truncated JSON; a profile is one JSON object such as {\"limits\": {\"memory\": \"1G\"}}", prefix)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

func goTypeWords(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

// lineCol converts a SyntaxError offset (bytes read, including the offending one) to the
// 1-based line and column of the offending byte.
func lineCol(data []byte, off int64) (line, col int) {
	pos := min(max(off-1, 0), int64(len(data)))
	before := data[:pos]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(pos) - bytes.LastIndexByte(before, '\n')
	return line, col
}

// sortedKeys returns a map's keys in order (used for stable messages).
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
