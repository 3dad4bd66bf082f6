package main

import (
	"bufio"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vatrun/vatrun/report"
	"github.com/vatrun/vatrun/seccompprofiles"
)

// textAttr matches one key=value of slog's text format (value bare or quoted).
var textAttr = regexp.MustCompile(`([A-Za-z]+)=("(?:[^"\\]|\\.)*"|\S*)`)

// logLines parses vatrun's stderr in either format into one map per log line (values as strings).
func logLines(t *testing.T, format, stderr string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		m := map[string]string{}
		switch format {
		case "json":
			var raw map[string]any
			if err := json.Unmarshal([]byte(line), &raw); err != nil {
				t.Fatalf("--log-format json: line is not JSON (%v): %s", err, line)
			}
			for k, v := range raw {
				switch v := v.(type) {
				case string:
					m[k] = v
				case float64:
					m[k] = strconv.FormatFloat(v, 'f', -1, 64)
				default:
					b, _ := json.Marshal(v)
					m[k] = string(b)
				}
			}
		case "text":
			for _, kv := range textAttr.FindAllStringSubmatch(line, -1) {
				v := kv[2]
				if uq, err := strconv.Unquote(v); err == nil {
					v = uq
				}
				m[kv[1]] = v
			}
			if m["msg"] == "" {
				t.Fatalf("--log-format text: no msg= in %q", line)
			}
		}
		out = append(out, m)
	}
	return out
}

// Per launch and per death, vatrun's log says which worker (--name), its pid, the profile digest
// and, at death, the classification — in both log formats.
func TestRunLogsIdentifyWorkerAndDeath(t *testing.T) {
	xsnap, _ := seccompprofiles.Builtin("xsnap")
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			name := "v7-" + format
			h := newHarness(t, []string{"--profile", "xsnap", "--name", name, "--log-format", format, "--log-level", "info"})
			h.send("ping")
			h.reply(bufio.NewReader(h.replyR))
			h.send("exit:12")
			res := h.await()
			wantDeath(t, res, 12, report.CauseMeteringFault, report.ClassDeterministic)
			var launched, died map[string]string
			for _, m := range logLines(t, format, res.stderr) {
				switch m["msg"] {
				case "worker launched":
					launched = m
				case "worker died":
					died = m
				}
			}
			if launched == nil || died == nil {
				t.Fatalf("want a launch and a death line, got:\n%s", res.stderr)
			}
			pid := strconv.Itoa(res.report.Pid)
			for what, m := range map[string]map[string]string{"launch": launched, "death": died} {
				if m["worker"] != name || m["pid"] != pid || m["profileDigest"] != xsnap.Digest() || m["level"] != "INFO" {
					t.Errorf("%s line: worker=%q pid=%q profileDigest=%q level=%q; want %q, %s, %s, INFO\n%s",
						what, m["worker"], m["pid"], m["profileDigest"], m["level"], name, pid, xsnap.Digest(), res.stderr)
				}
			}
			if launched["profile"] != "xsnap" {
				t.Errorf("launch line profile=%q, want xsnap", launched["profile"])
			}
			if died["cause"] != string(report.CauseMeteringFault) || died["class"] != string(report.ClassDeterministic) || died["detail"] != res.report.Detail {
				t.Errorf("death line cause=%q class=%q detail=%q; report says %s", died["cause"], died["class"], died["detail"], res.report.OneLine())
			}
		})
	}
}
