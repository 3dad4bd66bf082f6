// Command vminit is the /init of the end-to-end test VM. Build it static
// (CGO_ENABLED=0). It mounts proc, sysfs, devtmpfs, cgroup2 and /tmp, enables
// the memory, cpu and pids controllers, runs the programs listed in
// /e2e/manifest (each in its own cgroup, as its own uid) and powers off.
//
// Output protocol, on the results channel (/dev/ttyS1 when the VM has a second
// serial port, else the console), one marker a line:
//
//	=== VMRUN BOOT uptime=1.23
//	=== VMRUN BEGIN <name>
//	... the program's stdout and stderr ...
//	=== VMRUN END <name> exit=<code> seconds=<s> [timeout]
//	=== VMRUN DONE
//	=== VMRUN FATAL <message>
//
// exit is the exit code, or 128+signal for a program killed by a signal.
//
// When the manifest asks for it, init also loads kernel modules (module=) and
// mounts the host's root file system, exported by qemu over virtio-9p
// read-only, at hostroot= with the VM's own /proc, /sys (and its cgroup2),
// /dev and /tmp bound over it, so a run can chroot there; it then reports
//
//	=== VMRUN HOSTROOT uptime=<s> seconds=<s spent loading modules and mounting>
//
// It refuses to run unless it is pid 1 on an initramfs root, so running it on
// a host by mistake touches nothing.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

const (
	cgroupRoot   = "/sys/fs/cgroup"
	manifestPath = "/e2e/manifest"
	controllers  = "+memory +cpu +pids"

	tcsbrk = 0x5409 // TCSBRK ioctl, missing from package syscall

	sysFinitModule = 313 // finit_module(2) on x86-64, missing from package syscall

	ramfsMagic = 0x858458f6
	tmpfsMagic = 0x01021994
)

var (
	console io.Writer = os.Stdout // kernel log port, for humans
	results io.Writer = os.Stdout // machine-read port
	resFile *os.File
)

func main() {
	if err := guard(); err != nil {
		fmt.Fprintf(os.Stderr, "vminit: %v\n", err)
		os.Exit(2)
	}
	if err := run(); err != nil {
		marker("FATAL %v", err)
	}
	powerOff()
}

// guard makes sure this is the init of a VM booted from an initramfs.
func guard() error {
	if os.Getpid() != 1 {
		return errors.New("refusing to run: not pid 1 (this is the init of the e2e test VM, not a host tool)")
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs("/", &st); err != nil {
		return fmt.Errorf("statfs /: %w", err)
	}
	if st.Type != ramfsMagic && st.Type != tmpfsMagic {
		return fmt.Errorf("refusing to run: / is not an initramfs (fs type %#x)", st.Type)
	}
	return nil
}

func run() error {
	if err := leaveRootfs(); err != nil {
		return err
	}
	if err := mountAll(); err != nil {
		return err
	}
	openResults()
	marker("BOOT uptime=%s", uptime())

	f, err := os.Open(manifestPath)
	if err != nil {
		return fmt.Errorf("open manifest: %w", err)
	}
	m, err := parseManifest(f)
	f.Close()
	if err != nil {
		return err
	}
	time.AfterFunc(m.Watchdog, func() {
		marker("FATAL watchdog: the VM ran longer than %s", m.Watchdog)
		powerOff()
	})

	if err := setupCgroups(); err != nil {
		return err
	}
	if len(m.Modules) > 0 || m.HostRoot != "" {
		start := time.Now()
		for _, mod := range m.Modules {
			if err := loadModule(mod); err != nil {
				return err
			}
		}
		if m.HostRoot != "" {
			if err := mountHostRoot(m.HostRoot, m.Scratch); err != nil {
				return err
			}
		}
		marker("HOSTROOT uptime=%s seconds=%.3f", uptime(), time.Since(start).Seconds())
	}
	for _, r := range m.Runs {
		if err := runOne(r); err != nil {
			return fmt.Errorf("run %s: %w", r.Name, err)
		}
	}
	marker("DONE")
	return nil
}

// leaveRootfs moves the VM onto a bind mount of the initramfs, as switch_root does on a booted
// system: the initramfs's rootfs cannot be pivot_root'ed away, and vatrun's minimal root (a
// pivot_root in each worker's mount namespace) needs the current root to be an ordinary mount.
func leaveRootfs() error {
	if err := os.MkdirAll("/newroot", 0o755); err != nil {
		return fmt.Errorf("leave rootfs: %w", err)
	}
	if err := syscall.Mount("/", "/newroot", "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("leave rootfs: bind / on /newroot: %w", err)
	}
	if err := os.Chdir("/newroot"); err != nil {
		return fmt.Errorf("leave rootfs: %w", err)
	}
	if err := syscall.Mount(".", "/", "", syscall.MS_MOVE, ""); err != nil {
		return fmt.Errorf("leave rootfs: move the bind mount onto /: %w", err)
	}
	if err := syscall.Chroot("."); err != nil {
		return fmt.Errorf("leave rootfs: chroot: %w", err)
	}
	return os.Chdir("/")
}

func mountAll() error {
	type mnt struct {
		src, dir, fstype string
		flags            uintptr
		data             string
	}
	const nodevexec = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC
	for _, m := range []mnt{
		{"proc", "/proc", "proc", nodevexec, ""},
		{"sysfs", "/sys", "sysfs", nodevexec, ""},
		{"devtmpfs", "/dev", "devtmpfs", syscall.MS_NOSUID, "mode=0755"},
		{"cgroup2", cgroupRoot, "cgroup2", nodevexec, "nsdelegate,memory_recursiveprot"},
		{"tmpfs", "/tmp", "tmpfs", syscall.MS_NOSUID | syscall.MS_NODEV, "mode=1777"},
		{"tmpfs", "/dev/shm", "tmpfs", nodevexec, "mode=1777"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dir, err)
		}
		if err := syscall.Mount(m.src, m.dir, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	return nil
}

// loadModule loads a kernel module file (finit_module; no parameters, no flags).
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load module: %w", err)
	}
	defer f.Close()
	empty := []byte{0}
	_, _, errno := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(&empty[0])), 0)
	if errno != 0 && errno != syscall.EEXIST {
		return fmt.Errorf("finit_module %s: %w", path, errno)
	}
	return nil
}

// hostRootTag is the mount tag qemu exports the host's root under
// (-virtfs local,path=/,mount_tag=hostroot,readonly=on).
const hostRootTag = "hostroot"

// mountHostRoot mounts the host's root file system (virtio-9p, read-only
// both here and in qemu) at dir and binds the VM's own /proc, /sys (with the
// cgroup2 mount under it: the same hierarchy the runs' cgroups are in), /dev
// and /tmp over the host's, recursively, so a chroot into dir sees the host's
// programs and libraries but the VM's kernel interfaces and a writable /tmp.
func mountHostRoot(dir, scratch string) error {
	if scratch == "" {
		scratch = "/tmp"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	// cache=loose: the host's files do not change during the run, and the
	// page cache spares a 9p round trip per read (Node.js opens thousands of
	// files). msize: the largest message the virtio transport takes.
	const opts = "trans=virtio,version=9p2000.L,cache=loose,msize=512000"
	if err := syscall.Mount(hostRootTag, dir, "9p", syscall.MS_RDONLY|syscall.MS_NODEV|syscall.MS_NOSUID, opts); err != nil {
		return fmt.Errorf("mount 9p %s on %s (%s): %w", hostRootTag, dir, opts, err)
	}
	for _, sub := range [][2]string{{"/proc", "/proc"}, {"/sys", "/sys"}, {"/dev", "/dev"}, {"/tmp", scratch}} {
		if err := syscall.Mount(sub[0], dir+sub[1], "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", sub[0], dir+sub[1], err)
		}
	}
	logf("host root on %s (9p, read-only), with the VM's /proc /sys /dev, and its /tmp on %s", dir, scratch)
	return nil
}

// openResults uses the second serial port for machine-read output, so kernel
// messages (an OOM report, say) printed on the console cannot land in the
// middle of a test's output line. The port is put in raw mode (no \r\n).
func openResults() {
	f, err := os.OpenFile("/dev/ttyS1", os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err != nil {
		logf("no /dev/ttyS1 (%v): results go to the console", err)
		return
	}
	var t syscall.Termios
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t))); errno != 0 {
		logf("ttyS1: TCGETS: %v: results go to the console", errno)
		f.Close()
		return
	}
	t.Oflag &^= syscall.OPOST
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(&t))); errno != 0 {
		logf("ttyS1: TCSETS: %v: results go to the console", errno)
		f.Close()
		return
	}
	// A machine may list ttyS1 without a UART behind it: the write fails then.
	if _, err := f.Write([]byte("\n")); err != nil {
		logf("ttyS1: write: %v: results go to the console", err)
		f.Close()
		return
	}
	results, resFile = f, f
}

func setupCgroups() error {
	// The root cgroup may hold processes and still distribute controllers, but a
	// leaf for init keeps the layout the same as on a systemd host.
	if err := os.Mkdir(cgroupRoot+"/init", 0o755); err != nil {
		return fmt.Errorf("create init cgroup: %w", err)
	}
	if err := writeFile(cgroupRoot+"/init/cgroup.procs", "0"); err != nil {
		return fmt.Errorf("move init into its leaf: %w", err)
	}
	if err := enableControllers(cgroupRoot); err != nil {
		return err
	}
	avail, _ := os.ReadFile(cgroupRoot + "/cgroup.controllers")
	logf("cgroup2 controllers: %s", strings.TrimSpace(string(avail)))
	return nil
}

// enableControllers writes +memory +cpu +pids to dir's cgroup.subtree_control.
func enableControllers(dir string) error {
	if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), controllers); err != nil {
		return fmt.Errorf("enable %q in %s: %w", controllers, dir, err)
	}
	return nil
}

// makeCgroup creates cgroup rel (relative to the cgroup2 root) and the missing
// cgroups above it, and hands it to uid the way systemd's Delegate=yes does:
// the directory and its cgroup.procs, cgroup.subtree_control and cgroup.threads.
func makeCgroup(rel string, uid int, withControllers bool) (string, error) {
	dir := filepath.Join(cgroupRoot, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create cgroup %s: %w", rel, err)
	}
	if withControllers {
		if err := enableControllers(dir); err != nil {
			return "", err
		}
	}
	if uid != 0 {
		for _, name := range []string{"", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"} {
			p := filepath.Join(dir, name)
			if err := os.Chown(p, uid, uid); err != nil {
				return "", fmt.Errorf("delegate %s to uid %d: %w", p, uid, err)
			}
		}
	}
	return dir, nil
}

func runOne(r Run) error {
	env := []string{
		"PATH=/bin:/e2e",
		"TMPDIR=/tmp",
		"VATRUN_IN_VM=1",
		"VATRUN_E2E_RUN=" + r.Name,
	}
	if r.UID == 0 {
		env = append(env, "HOME=/root", "USER=root")
	} else {
		env = append(env, "HOME=/tmp", fmt.Sprintf("USER=u%d", r.UID))
	}
	if r.Parent != "" {
		if _, err := makeCgroup(r.Parent, r.UID, true); err != nil {
			return err
		}
		// A cgroup path ("/e2e-u1000"), as /proc/self/cgroup shows it and as
		// vatrun's --cgroup-parent takes it. Not VATRUN_CGROUP_PARENT: the runs
		// start in <parent>/vatrun-supervisor so vatrun's default (its own
		// cgroup's parent) is what gets tested; a test sets that variable itself
		// when it wants to test it.
		env = append(env, "VATRUN_E2E_CGROUP_PARENT="+r.Parent)
	}
	env = append(env, r.Env...)

	cmd := exec.Command(r.Argv[0], r.Argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/tmp"
	cmd.Stdout, cmd.Stderr = results, results
	if resFile != nil {
		cmd.Stdout, cmd.Stderr = resFile, resFile
	}
	attr := &syscall.SysProcAttr{Setpgid: true}
	if r.UID != 0 {
		attr.Credential = &syscall.Credential{Uid: uint32(r.UID), Gid: uint32(r.UID), Groups: []uint32{}}
	}
	var cgDir string
	if r.Cgroup != "" {
		dir, err := makeCgroup(r.Cgroup, r.UID, false)
		if err != nil {
			return err
		}
		cg, err := os.Open(dir)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", dir, err)
		}
		defer cg.Close()
		attr.UseCgroupFD, attr.CgroupFD = true, int(cg.Fd())
		cgDir = dir
	}
	cmd.SysProcAttr = attr

	marker("BEGIN %s", r.Name)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		marker("END %s exit=127 seconds=0.000 start-failed: %v", r.Name, err)
		return nil
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(r.Timeout, func() {
		timedOut.Store(true)
		logf("run %s: timeout after %s: killing it", r.Name, r.Timeout)
		if cgDir != "" {
			_ = writeFile(filepath.Join(cgDir, "cgroup.kill"), "1")
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	err := cmd.Wait()
	timer.Stop()
	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = ws.ExitStatus()
		}
	default:
		return fmt.Errorf("wait: %w", err)
	}
	// Whatever the run left behind in its process group goes too.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	suffix := ""
	if timedOut.Load() {
		suffix = " timeout"
	}
	marker("END %s exit=%d seconds=%.3f%s", r.Name, code, time.Since(start).Seconds(), suffix)
	return nil
}

func marker(format string, args ...any) {
	line := "=== VMRUN " + fmt.Sprintf(format, args...) + "\n"
	_, _ = io.WriteString(results, line)
	if results != console {
		_, _ = io.WriteString(console, line)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(console, "vminit: "+format+"\n", args...)
}

func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(s)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func powerOff() {
	if resFile != nil {
		// TCSBRK with a non-zero argument waits until the output is sent (tcdrain).
		_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, resFile.Fd(), tcsbrk, 1)
	}
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	// Only reached if the power-off failed; returning from init panics the
	// kernel, and panic=-1 with qemu -no-reboot ends the VM as well.
	fmt.Fprintf(os.Stderr, "vminit: power off: %v\n", err)
	os.Exit(1)
}
