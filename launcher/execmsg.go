package launcher

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/vatrun/vatrun/sandbox"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// execError is a failed execve of the worker, with a message that says which file was missing
// when the worker itself exists (its #! or ELF interpreter); errors.Is finds kind (ErrNotFound,
// ErrNotExecutable) and the sandbox error.
type execError struct {
	kind error
	msg  string
	err  error
}

func (e *execError) Error() string        { return e.msg }
func (e *execError) Unwrap() []error      { return []error{e.kind, e.err} }
func (e *execError) Is(target error) bool { return target == e.kind }

// explainExecFailure builds the error of a worker whose execve failed with kind (execFailure).
// A worker that exists but whose interpreter does not is not "worker not found": the message names
// the interpreter (as shells do, the exit code stays 127).
func explainExecFailure(kind error, path string, err error) error {
	var se *sandbox.SetupError
	if errors.Is(kind, ErrNotFound) && errors.As(err, &se) && se.Errno == syscall.ENOENT {
		if what, interp := interpreterOf(path); interp != "" {
			where := "does not exist"
			if _, serr := os.Stat(interp); serr == nil {
				where = "exists on the host but not inside the sandbox (add it to the profile's mounts)"
			}
			return &execError{kind: kind, err: err, msg: fmt.Sprintf("worker %s exists, but its %s %s %s; install it or fix the worker (%v)", path, what, interp, where, err)}
		}
	}
	return fmt.Errorf("%w: %s: %w", kind, path, err)
}

// interpreterOf returns what runs path: ("#! interpreter", its path) for a script, ("ELF
// interpreter (dynamic loader)", PT_INTERP) for a dynamic executable, or "" when it cannot tell.
func interpreterOf(path string) (what, interp string) {
	f, err := os.Open(path)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if bytes.HasPrefix(head, []byte("#!")) {
		line, _, _ := bytes.Cut(head[2:], []byte("\n"))
		fields := strings.Fields(string(line))
		if len(fields) > 0 {
			return "#! interpreter", fields[0]
		}
		return "", ""
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return "", ""
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err == nil {
				return "ELF interpreter (dynamic loader)", strings.TrimRight(string(b), "\x00")
			}
		}
	}
	return "", ""
}

// execveFilterHint is a hint for a worker execve that failed in the sandbox although the worker is
// executable: the profile's seccomp filter is loaded before the worker's execve, so a filter that
// does not allow execve unconditionally refuses the worker itself. "" when the filter allows it.
func execveFilterHint(p *seccompprofiles.Profile, err error) string {
	var se *sandbox.SetupError
	if p == nil || p.Seccomp == nil || !errors.As(err, &se) || !strings.HasPrefix(se.Step, "execve ") {
		return ""
	}
	if filterAllowsExecve(p.Seccomp) {
		return ""
	}
	return "the profile's seccomp filter does not allow execve, which starts the worker after the filter is loaded: add \"execve\" to an SCMP_ACT_ALLOW rule (vatrun profile learn records it)"
}

// filterAllowsExecve says whether execve with any arguments gets an allowing action: a rule
// without argument conditions that names it, else the default action.
func filterAllowsExecve(s *seccompprofiles.Seccomp) bool {
	allows := func(a string) bool { return a == "SCMP_ACT_ALLOW" || a == "SCMP_ACT_LOG" }
	for _, r := range s.Syscalls {
		if len(r.Args) == 0 && slices.Contains(r.Names, "execve") {
			return allows(string(r.Action))
		}
	}
	return allows(string(s.DefaultAction))
}
