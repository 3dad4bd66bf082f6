package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// cmdline is the prologue every subcommand shares: its flag set (errors and -h on stderr, after
// the usage line), the optional log flags, and fail, which prefixes the command's name.
type cmdline struct {
	name   string // "vatrun run"
	fs     *flag.FlagSet
	stdout io.Writer // -h/--help: the usage goes here, exit 0
	stderr io.Writer
	usage  string
	// usageCode is the exit status of a bad flag (exitUsage; the kernel command has its own).
	usageCode int

	logFormat, logLevel, logFile *string
	logFileHandle                *os.File
}

func newCmdline(name, usage string, stdout, stderr io.Writer) *cmdline {
	c := &cmdline{name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError), stdout: stdout, stderr: stderr, usage: usage, usageCode: exitUsage}
	c.fs.SetOutput(stderr)
	c.fs.Usage = func() {
		fmt.Fprintln(c.fs.Output(), c.usage)
		c.fs.PrintDefaults()
	}
	return c
}

// logFlags adds --log-format, --log-level (default warn) and, with file, --log-file.
func (c *cmdline) logFlags(levelHelp string, file bool) {
	c.logFormat = c.fs.String("log-format", "text", "log format on stderr: text or json")
	c.logLevel = c.fs.String("log-level", "warn", "log level: "+levelHelp)
	if file {
		c.logFile = c.fs.String("log-file", "", "append logs to this file instead of stderr (which vatrun shares with the worker and the kernel)")
	}
}

// parse parses args. ok is false when the command is over: -h (code 0) or a bad flag (the flag
// package has said why on stderr; code usageCode).
// Asked for (-h, --help), the usage goes to stdout; after a bad flag, to stderr.
func (c *cmdline) parse(args []string) (code int, ok bool) {
	var out bytes.Buffer
	c.fs.SetOutput(&out)
	err := c.fs.Parse(args)
	c.fs.SetOutput(c.stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			w := c.stdout
			if w == nil {
				w = c.stderr
			}
			io.Copy(w, &out)
			return 0, false
		}
		io.Copy(c.stderr, &out)
		return c.usageCode, false
	}
	return 0, true
}

// given says which flags were set on the command line.
func (c *cmdline) given() map[string]bool {
	m := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}

// fail says what is wrong on stderr, prefixed with the command's name, and returns code.
func (c *cmdline) fail(code int, format string, a ...any) int {
	fmt.Fprintf(c.stderr, c.name+": "+format+"\n", a...)
	return code
}

// logger is the slog logger the log flags ask for (a discarding one without log flags).
func (c *cmdline) logger() (*slog.Logger, error) {
	if c.logFormat == nil {
		return slog.New(slog.DiscardHandler), nil
	}
	out := c.stderr
	if c.logFile != nil && *c.logFile != "" {
		f, err := os.OpenFile(*c.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--log-file: %w (choose a writable path)", err)
		}
		c.logFileHandle = f
		out = f
	}
	return newLogger(out, *c.logFormat, *c.logLevel)
}

// close releases what the prologue opened (the log file).
func (c *cmdline) close() {
	if c.logFileHandle != nil {
		c.logFileHandle.Close()
	}
}

// newLogger builds the slog logger for --log-format and --log-level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
