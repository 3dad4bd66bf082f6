// Package initramfs writes Linux initramfs images: cpio archives in the "newc"
// format (magic 070701), optionally gzip-compressed, as the kernel's
// init/initramfs.c unpacks them. Only what an initramfs needs is supported:
// directories, regular files, symlinks and device nodes. Parent directories are
// emitted automatically, before their contents, because the kernel does not create
// them on its own.
package initramfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

const (
	magic      = "070701"
	headerSize = 110 // 6 bytes of magic + 13 fields of 8 hex digits
	trailer    = "TRAILER!!!"

	// File type bits of the cpio mode field (same values as stat's S_IF*).
	typeDir     = 0o040000
	typeReg     = 0o100000
	typeSymlink = 0o120000
	typeChar    = 0o020000
	typeBlock   = 0o060000
)

// Writer writes a newc cpio archive. Entries are owned by root unless
// written with an explicit owner (WriteEntry). All timestamps are zero, so
// the same input gives byte-identical archives.
type Writer struct {
	w      io.Writer
	n      int64 // bytes written so far, for padding
	ino    uint32
	dirs   map[string]bool
	names  map[string]bool
	closed bool
}

// NewWriter returns a Writer that writes an uncompressed archive to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, ino: 1, dirs: map[string]bool{"": true}, names: map[string]bool{}}
}

// Entry describes one archive member.
type Entry struct {
	Name  string      // path inside the archive; a leading "/" is removed
	Mode  fs.FileMode // Go file mode: type bits (fs.ModeDir, fs.ModeSymlink, fs.ModeDevice, fs.ModeCharDevice) + permissions
	UID   int
	GID   int
	Major uint32 // device numbers, for device nodes
	Minor uint32
}

// Dir writes a directory owned by root.
func (cw *Writer) Dir(name string, perm fs.FileMode) error {
	return cw.WriteEntry(Entry{Name: name, Mode: fs.ModeDir | permBits(perm)}, nil, 0)
}

// File writes a regular file owned by root with the given contents.
func (cw *Writer) File(name string, perm fs.FileMode, data []byte) error {
	return cw.WriteEntry(Entry{Name: name, Mode: permBits(perm)}, strings.NewReader(string(data)), int64(len(data)))
}

// CopyFile writes the host file src as name, with src's permission bits, owned by root.
func (cw *Writer) CopyFile(name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("initramfs: stat %s: %w", src, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("initramfs: %s is not a regular file", src)
	}
	return cw.WriteEntry(Entry{Name: name, Mode: st.Mode().Perm()}, f, st.Size())
}

// Symlink writes a symbolic link name -> target.
func (cw *Writer) Symlink(name, target string) error {
	return cw.WriteEntry(Entry{Name: name, Mode: fs.ModeSymlink | 0o777}, strings.NewReader(target), int64(len(target)))
}

// CharDev writes a character device node.
func (cw *Writer) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	return cw.WriteEntry(Entry{Name: name, Mode: fs.ModeDevice | fs.ModeCharDevice | perm.Perm(), Major: major, Minor: minor}, nil, 0)
}

// WriteEntry writes one member whose contents (size bytes) come from r
// (nil for directories and device nodes). Missing parent directories are
// written first (mode 0755, root). Writing the same name twice is an error.
func (cw *Writer) WriteEntry(e Entry, r io.Reader, size int64) error {
	if cw.closed {
		return errors.New("initramfs: write after Close")
	}
	name, err := cleanName(e.Name)
	if err != nil {
		return err
	}
	if cw.names[name] {
		return fmt.Errorf("initramfs: duplicate entry %q", name)
	}
	if err := cw.parents(name); err != nil {
		return err
	}
	mode, err := cpioMode(e.Mode)
	if err != nil {
		return fmt.Errorf("initramfs: %s: %w", name, err)
	}
	if (mode&typeDir == typeDir || e.Mode&fs.ModeDevice != 0) && size != 0 {
		return fmt.Errorf("initramfs: %s: directories and devices have no contents", name)
	}
	if size > 0xffffffff {
		return fmt.Errorf("initramfs: %s: %d bytes is too large for newc", name, size)
	}
	nlink := uint32(1)
	if e.Mode.IsDir() {
		nlink = 2
	}
	if err := cw.header(name, mode, uint32(e.UID), uint32(e.GID), nlink, uint32(size), e.Major, e.Minor); err != nil {
		return fmt.Errorf("initramfs: %s: %w", name, err)
	}
	if size > 0 {
		n, err := io.Copy(cw, io.LimitReader(r, size))
		if err != nil {
			return fmt.Errorf("initramfs: %s: %w", name, err)
		}
		if n != size {
			return fmt.Errorf("initramfs: %s: short contents: %d of %d bytes", name, n, size)
		}
	}
	if err := cw.pad(); err != nil {
		return fmt.Errorf("initramfs: %s: %w", name, err)
	}
	cw.names[name] = true
	if e.Mode.IsDir() {
		cw.dirs[name] = true
	}
	return nil
}

// Close writes the trailer. It does not close the underlying writer.
func (cw *Writer) Close() error {
	if cw.closed {
		return nil
	}
	if err := cw.header(trailer, 0, 0, 0, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("initramfs: trailer: %w", err)
	}
	if err := cw.pad(); err != nil {
		return fmt.Errorf("initramfs: trailer: %w", err)
	}
	cw.closed = true
	return nil
}

// Write implements io.Writer for the contents copy; it keeps the offset.
func (cw *Writer) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return n, err
}

func (cw *Writer) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		dir = ""
	}
	if cw.dirs[dir] {
		return nil
	}
	if cw.names[dir] {
		return fmt.Errorf("initramfs: %s: parent %s is not a directory", name, dir)
	}
	return cw.Dir(dir, 0o755)
}

func (cw *Writer) header(name string, mode, uid, gid, nlink, size, rmajor, rminor uint32) error {
	ino := cw.ino
	cw.ino++
	fields := []uint32{
		ino, mode, uid, gid, nlink,
		0,    // mtime
		size, // filesize
		0, 0, // devmajor, devminor (of the archived file system; unused)
		rmajor, rminor,
		uint32(len(name) + 1), // namesize, with the NUL
		0,                     // check (only for 070702)
	}
	var b strings.Builder
	b.Grow(headerSize + len(name) + 4)
	b.WriteString(magic)
	for _, f := range fields {
		fmt.Fprintf(&b, "%08x", f)
	}
	b.WriteString(name)
	b.WriteByte(0)
	if _, err := io.WriteString(cw, b.String()); err != nil {
		return err
	}
	return cw.pad()
}

// pad aligns the output to 4 bytes, as newc requires after the name and after the data.
func (cw *Writer) pad() error {
	if rem := cw.n % 4; rem != 0 {
		_, err := cw.Write(make([]byte, 4-rem))
		return err
	}
	return nil
}

// permBits keeps the permission, setuid, setgid and sticky bits of m.
func permBits(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

func cleanName(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	if n == "" {
		return "", fmt.Errorf("initramfs: empty entry name %q", name)
	}
	c := path.Clean(n)
	if c != n || c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("initramfs: entry name %q is not clean", name)
	}
	if c == trailer {
		return "", fmt.Errorf("initramfs: entry name %q is reserved", name)
	}
	return c, nil
}

func cpioMode(m fs.FileMode) (uint32, error) {
	perm := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		perm |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		perm |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		perm |= 0o1000
	}
	switch t := m.Type(); {
	case t == 0:
		return typeReg | perm, nil
	case t == fs.ModeDir:
		return typeDir | perm, nil
	case t == fs.ModeSymlink:
		return typeSymlink | perm, nil
	case t == fs.ModeDevice|fs.ModeCharDevice:
		return typeChar | perm, nil
	case t == fs.ModeDevice:
		return typeBlock | perm, nil
	default:
		return 0, fmt.Errorf("unsupported file type %v", t)
	}
}
