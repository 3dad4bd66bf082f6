// Package shebang reads a script's #! line: the sandbox makes the interpreter visible to the
// worker, and the worker digest covers it.
package shebang

import (
	"bytes"
	"path/filepath"
	"strings"
)

// Interpreter is the absolute interpreter path of a "#!" line at the start of head (the first
// bytes of a file), or "" when head is not a script or names no absolute interpreter.
func Interpreter(head []byte) string {
	if !bytes.HasPrefix(head, []byte("#!")) {
		return ""
	}
	line, _, _ := bytes.Cut(head[2:], []byte("\n"))
	if fields := strings.Fields(string(line)); len(fields) > 0 && filepath.IsAbs(fields[0]) {
		return fields[0]
	}
	return ""
}
