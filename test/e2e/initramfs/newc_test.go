package initramfs

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type member struct {
	name         string
	mode         uint32
	uid, gid     uint32
	nlink        uint32
	rmaj, rmin   uint32
	data         string
	headerOffset int
}

// parse is an independent newc reader used to check the writer's output.
func parse(t *testing.T, b []byte) []member {
	t.Helper()
	var out []member
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("header at unaligned offset %d", off)
		}
		if len(b)-off < headerSize {
			t.Fatalf("truncated header at %d", off)
		}
		h := b[off : off+headerSize]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		f := make([]uint32, 13)
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:6+8*i+8]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			f[i] = uint32(v)
		}
		namesize, size := int(f[11]), int(f[6])
		nameStart := off + headerSize
		name := string(b[nameStart : nameStart+namesize])
		if !strings.HasSuffix(name, "\x00") {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		name = strings.TrimSuffix(name, "\x00")
		dataStart := align4(nameStart + namesize)
		for _, p := range b[nameStart+namesize : dataStart] {
			if p != 0 {
				t.Fatalf("non-zero name padding after %q", name)
			}
		}
		m := member{name: name, mode: f[1], uid: f[2], gid: f[3], nlink: f[4], rmaj: f[9], rmin: f[10],
			data: string(b[dataStart : dataStart+size]), headerOffset: off}
		off = align4(dataStart + size)
		if name == trailer {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, m)
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

func build(t *testing.T, fn func(w *Writer) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := fn(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	b := build(t, func(w *Writer) error {
		for _, step := range []func() error{
			func() error { return w.File("/init", 0o755, []byte("#!init")) },
			func() error { return w.CharDev("/dev/console", 0o600, 5, 1) },
			func() error { return w.File("/e2e/sub/manifest", 0o644, []byte("abc")) },
			func() error { return w.Symlink("/lib64", "usr/lib") },
			func() error { return w.Dir("/tmp", 0o1777|fs.ModeSticky) },
			func() error {
				return w.WriteEntry(Entry{Name: "/home/user", Mode: fs.ModeDir | 0o700, UID: 1000, GID: 1000}, nil, 0)
			},
		} {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
	got := parse(t, b)
	var names []string
	for _, m := range got {
		names = append(names, m.name)
	}
	want := "init dev dev/console e2e e2e/sub e2e/sub/manifest lib64 tmp home home/user"
	if strings.Join(names, " ") != want {
		t.Fatalf("names = %q, want %q", strings.Join(names, " "), want)
	}
	byName := map[string]member{}
	for _, m := range got {
		byName[m.name] = m
	}
	check := func(name string, mode uint32, data string) {
		t.Helper()
		m := byName[name]
		if m.mode != mode || m.data != data {
			t.Errorf("%s: mode %o data %q, want %o %q", name, m.mode, m.data, mode, data)
		}
	}
	check("init", 0o100755, "#!init")
	check("dev", 0o040755, "")
	check("dev/console", 0o020600, "")
	check("e2e/sub/manifest", 0o100644, "abc")
	check("lib64", 0o120777, "usr/lib")
	check("tmp", 0o041777, "")
	check("home/user", 0o040700, "")
	if m := byName["dev/console"]; m.rmaj != 5 || m.rmin != 1 {
		t.Errorf("dev/console rdev = %d:%d, want 5:1", m.rmaj, m.rmin)
	}
	if m := byName["home/user"]; m.uid != 1000 || m.gid != 1000 || m.nlink != 2 {
		t.Errorf("home/user uid/gid/nlink = %d/%d/%d", m.uid, m.gid, m.nlink)
	}
	// The first header is exactly what the format says, byte for byte.
	wantHdr := "070701" + "00000001" + "000081ed" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000006" + "00000000" + "00000000" + "00000000" + "00000000" + "00000005" + "00000000" + "init\x00"
	if got := string(b[:len(wantHdr)]); got != wantHdr {
		t.Errorf("first header:\n got %q\nwant %q", got, wantHdr)
	}
}

func TestDeterministic(t *testing.T) {
	mk := func(w *Writer) error { return w.File("a/b", 0o644, []byte("x")) }
	if !bytes.Equal(build(t, mk), build(t, mk)) {
		t.Fatal("same input gave different archives")
	}
}

func TestErrors(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.File("a", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"duplicate":      w.File("/a", 0o644, nil),
		"parent is file": w.File("a/b", 0o644, nil),
		"unclean":        w.File("x/../y", 0o644, nil),
		"empty":          w.File("/", 0o644, nil),
		"reserved":       w.File(trailer, 0o644, nil),
		"short":          w.WriteEntry(Entry{Name: "s", Mode: 0o644}, strings.NewReader("ab"), 3),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.File("late", 0o644, nil); err == nil {
		t.Error("write after Close: no error")
	}
}

// TestCpioTool cross-checks with GNU cpio when it happens to be installed.
func TestCpioTool(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("cpio not installed; the round-trip test covers the format")
	}
	dir := t.TempDir()
	b := build(t, func(w *Writer) error {
		if err := w.File("d/f", 0o640, []byte("hello\n")); err != nil {
			return err
		}
		return w.Symlink("l", "d/f")
	})
	cmd := exec.Command(cpio, "-idm", "--quiet", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(b)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "l"))
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("extracted l = %q, %v", got, err)
	}
}
