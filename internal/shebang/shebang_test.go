package shebang

import "testing"

func TestInterpreter(t *testing.T) {
	for head, want := range map[string]string{
		"#!/bin/sh\necho":           "/bin/sh",
		"#! /usr/bin/env node -x\n": "/usr/bin/env",
		"#!relative/sh\n":           "",
		"#!\n":                      "",
		"\x7fELF\x02\x01":           "",
		"echo hi":                   "",
		"#!/bin/sh":                 "/bin/sh",
	} {
		if got := Interpreter([]byte(head)); got != want {
			t.Errorf("Interpreter(%q) = %q, want %q", head, got, want)
		}
	}
}
