// Package proctree reads the process tree from /proc, for tests that must find a worker (the
// child of vatrun's init stage, itself a child of vatrun) or prove nothing was left behind.
package proctree

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Children lists pid's children (those of every thread).
func Children(pid int) []int {
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Grandchildren lists the children of pid's children: the workers under vatrun's init stages.
func Grandchildren(pid int) []int {
	var out []int
	for _, c := range Children(pid) {
		out = append(out, Children(c)...)
	}
	return out
}

// Holding lists the fds of pid ("N -> target") that refer to the same files as files, compared by
// their /proc link ("pipe:[123]": both ends of a pipe name it alike): a test's way to see whether
// another process still holds one of its pipes.
func Holding(pid int, files ...*os.File) []string {
	want := map[string]bool{}
	for _, f := range files {
		if l, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); err == nil {
			want[l] = true
		}
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	var held []string
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && want[l] {
			held = append(held, e.Name()+" -> "+l)
		}
	}
	return held
}

// Alive says whether pid exists and is not a zombie (a dead process not yet reaped).
func Alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // the name may hold spaces and ')'
	return len(f) > 0 && f[0] != "Z"
}
