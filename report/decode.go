package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode"
)

var knownCauses = map[Cause]bool{
	CauseExited: true, CauseMeteringFault: true, CauseExitCode: true, CauseOOMLimit: true,
	CauseOOMHost: true, CauseCPULimit: true, CauseSegv: true, CauseAbort: true, CausePidsLimit: true,
	CauseSandboxViolation: true, CauseExternalSignal: true, CauseKilled: true, CauseStopped: true,
	CauseSetupFailed: true, CauseSignal: true, CauseLauncherDied: true,
}

var knownClasses = map[Class]bool{
	ClassClean: true, ClassDeterministic: true, ClassResourceExhaustion: true, ClassExternal: true,
	ClassSandboxViolation: true, ClassLauncherError: true, ClassUnknown: true,
}

// Valid reports whether c is one of the causes this package defines.
func (c Cause) Valid() bool { return knownCauses[c] }

// Valid reports whether c is one of the classes this package defines.
func (c Class) Valid() bool { return knownClasses[c] }

// jsonFields lists the exact JSON member names of a struct type.
func jsonFields(t reflect.Type) map[string]bool {
	m := make(map[string]bool)
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}

var (
	reportFields = jsonFields(reflect.TypeOf(Report{}))
	cgroupFields = jsonFields(reflect.TypeOf(CgroupEvidence{}))
)

// Decode strictly decodes one JSON death report, as written by vatrun: a single object (surrounding
// white space allowed), member names spelled exactly as in the schema, none unknown or repeated,
// version 1, a known cause and class, and no contradiction (an exit code and a signal together, or
// cgroup counters while cgroupEvidence is false). An empty warnings list decodes as nil.
func Decode(data []byte) (Report, error) {
	if err := checkMembers(data, "report", reportFields); err != nil {
		return Report{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Report
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("report: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Report{}, errors.New("report: data after the report object")
	}
	if err := r.validate(); err != nil {
		return Report{}, fmt.Errorf("report: %w", err)
	}
	if len(r.Warnings) == 0 {
		r.Warnings = nil
	}
	return r, nil
}

func (r Report) validate() error {
	if r.Version != 1 {
		return fmt.Errorf("unsupported version %d (want 1)", r.Version)
	}
	if !r.Cause.Valid() {
		return fmt.Errorf("unknown cause %q", r.Cause)
	}
	if !r.Class.Valid() {
		return fmt.Errorf("unknown class %q", r.Class)
	}
	if r.Signal < 0 {
		return fmt.Errorf("negative signal %d", r.Signal)
	}
	if r.ExitCode != nil && (r.Signal != 0 || r.SignalName != "") {
		return errors.New("both an exit code and a signal")
	}
	if !r.CgroupEvidence && (r.Cgroup != nil || r.OOMKills != nil || r.OOMEvents != nil ||
		r.PeakMemory != nil || r.PidsMax != nil) {
		return errors.New("cgroup counters present while cgroupEvidence is false")
	}
	return nil
}

// checkMembers walks one JSON object and rejects member names that are not exactly in known (the
// standard decoder matches names case-insensitively) and repeated names. It descends into "cgroup".
func checkMembers(data []byte, what string, known map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if tok != json.Delim('{') {
		return fmt.Errorf("%s: not a JSON object", what)
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		name, _ := tok.(string)
		if !known[name] {
			return fmt.Errorf("%s: unknown field %s", what, strconv.Quote(name))
		}
		if seen[name] {
			return fmt.Errorf("%s: field %s appears twice", what, strconv.Quote(name))
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("%s: field %s: %w", what, strconv.Quote(name), err)
		}
		if what == "report" && name == "cgroup" && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			if err := checkMembers(raw, "report: cgroup", cgroupFields); err != nil {
				return err
			}
		}
	}
	return nil
}

// OneLine is the report in one readable line, for the demo and for logs, e.g.
//
//	cause=oom-limit class=resource-exhaustion signal=SIGKILL peak=32.0MiB cpu=0.41s wall=1.20s killedBy=nobody — killed by SIGKILL after …
func (r Report) OneLine() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cause=%s class=%s", r.Cause, r.Class)
	switch {
	case r.ExitCode != nil:
		fmt.Fprintf(&b, " exit=%d", *r.ExitCode)
	case r.SignalName != "":
		fmt.Fprintf(&b, " signal=%s", r.SignalName)
	case r.Signal != 0:
		fmt.Fprintf(&b, " signal=%d", r.Signal)
	}
	if r.CoreDumped {
		b.WriteString(" core=dumped")
	}
	if r.Phase != "" {
		fmt.Fprintf(&b, " phase=%s", oneLineValue(r.Phase))
	}
	if r.PeakMemory != nil {
		fmt.Fprintf(&b, " peak=%s", formatBytes(*r.PeakMemory))
	}
	if r.OOMKills != nil && *r.OOMKills > 0 {
		fmt.Fprintf(&b, " oomKills=%d", *r.OOMKills)
	}
	if r.PidsMax != nil && *r.PidsMax > 0 {
		fmt.Fprintf(&b, " pidsMax=%d", *r.PidsMax)
	}
	if !r.CgroupEvidence {
		b.WriteString(" cgroup=none")
	}
	fmt.Fprintf(&b, " cpu=%.2fs wall=%.2fs", r.CPUSeconds, r.WallTime)
	killedBy := r.KilledBy
	if killedBy == "" {
		killedBy = KilledByNobody
	}
	fmt.Fprintf(&b, " killedBy=%s", oneLineValue(killedBy))
	if r.KillReason != "" {
		fmt.Fprintf(&b, " reason=%s", strconv.Quote(r.KillReason))
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(&b, " warnings=%d", len(r.Warnings))
	}
	text := r.Detail
	if text == "" && r.SetupError != "" {
		text = "setup error: " + r.SetupError
	}
	if text != "" {
		b.WriteString(" — ")
		b.WriteString(oneLineText(text))
	}
	return b.String()
}

// oneLineText turns line breaks and other control characters into spaces.
func oneLineText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// oneLineValue quotes v when it would break the key=value form.
func oneLineValue(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\r\n\"=") {
		return strconv.Quote(v)
	}
	return v
}
