package e2e

// Unit tests of the host side of the harness; they need neither qemu nor a kernel.

import (
	"debug/elf"
	"regexp"
	"strings"
	"testing"
)

func TestParseResults(t *testing.T) {
	in := "junk before\r\n" +
		"=== VMRUN BOOT uptime=1.50\n" +
		"=== VMRUN BEGIN root\n" +
		"line one\r\n" +
		"no newline at end=== VMRUN END root exit=1 seconds=2.500\n" +
		"=== VMRUN BEGIN uid1000\n" +
		"x\n" +
		"=== VMRUN END uid1000 exit=137 seconds=9.000 timeout\n" +
		"=== VMRUN BEGIN lost\n" +
		"partial output\n" +
		"=== VMRUN FATAL watchdog: too long\n"
	res := parseResults([]byte(in))
	if res.BootUptime != "1.50" || res.Done || len(res.Fatal) != 1 || strings.Join(res.Order, ",") != "root,uid1000,lost" {
		t.Fatalf("parsed %+v", res)
	}
	r := res.Runs["root"]
	if string(r.Output) != "line one\nno newline at end\n" || !r.Ended || r.Exit != 1 || r.Seconds != 2.5 || r.TimedOut {
		t.Errorf("root = %+v, output %q", r, r.Output)
	}
	if r := res.Runs["uid1000"]; r.Exit != 137 || !r.TimedOut {
		t.Errorf("uid1000 = %+v", r)
	}
	if r := res.Runs["lost"]; r.Ended || string(r.Output) != "partial output\n" {
		t.Errorf("lost = %+v, output %q", r, r.Output)
	}
}

func TestDecodeEvents(t *testing.T) {
	js := `{"Action":"start"}
{"Action":"run","Test":"TestA"}
{"Action":"output","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"output","Test":"TestA","Output":"E2E-ROW a|want|got|0.250\n"}
{"Action":"run","Test":"TestA/sub"}
{"Action":"output","Test":"TestA/sub","Output":"    boom\n"}
{"Action":"fail","Test":"TestA/sub","Elapsed":0.1}
{"Action":"fail","Test":"TestA","Elapsed":0.3}
{"Action":"run","Test":"TestB"}
{"Action":"skip","Test":"TestB","Elapsed":0}
{"Action":"run","Test":"TestC"}
{"Action":"output","Test":"TestC","Output":"panic: oops\n"}
{"Action":"output","Output":"FAIL\n"}
{"Action":"fail","Elapsed":1}
`
	r, err := decodeEvents("root", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, vt := range r.Tests {
		got = append(got, vt.Name+"="+vt.Action)
	}
	if strings.Join(got, " ") != "TestA=fail TestB=skip TestC=" {
		t.Errorf("tests = %q", got)
	}
	if a := r.byName["TestA"]; !strings.Contains(a.Output.String(), "boom") || a.Elapsed.Seconds() != 0.3 {
		t.Errorf("TestA output %q elapsed %v", a.Output.String(), a.Elapsed)
	}
	if len(r.Rows) != 1 || r.Rows[0] != (tableRow{Run: "root", Case: "a", Expected: "want", Observed: "got", Seconds: 0.25, Test: "TestA"}) {
		t.Errorf("rows = %+v", r.Rows)
	}
	if r.Package != "fail" || r.Loose.String() != "FAIL\n" {
		t.Errorf("package %q loose %q", r.Package, r.Loose.String())
	}
	table := formatTable(r.Rows, func(run, test string) string { return run + ":" + test })
	if !strings.Contains(table, "| root:TestA") || !strings.HasPrefix(table, "run  | case") {
		t.Errorf("table:\n%s", table)
	}
}

func TestPlanAndManifest(t *testing.T) {
	c := &config{strict: true, timeout: 300e9, filter: regexp.MustCompile("OOM|Env"),
		extraBin: map[string]string{"/bin/vatrun": "/x/vatrun"}}
	runs := planRuns(c, []string{"TestEnvironment", "TestOOMKill", "TestOther", "TestUnprivOOMKill", "TestUnprivOther", "TestSwingSetKernelOOM"})
	if len(runs) != 3 || strings.Join(runs[0].tests, ",") != "TestEnvironment,TestOOMKill" || strings.Join(runs[1].tests, ",") != "TestUnprivOOMKill" ||
		runs[2].spec.name != "swingset" || runs[2].spec.boot != bootSwingSet || strings.Join(runs[2].tests, ",") != "TestSwingSetKernelOOM" {
		t.Fatalf("runs = %+v", runs)
	}
	m := makeManifest(c, &bootConfig{}, runs[:2])
	for _, want := range []string{
		"watchdog=5m0s\n",
		"run name=root uid=0 parent=/e2e-root cgroup=/e2e-root/vatrun-supervisor timeout=5m0s env=VATRUN_E2E_STRICT=1 env=VATRUN_BIN=/bin/vatrun /e2e/vm.test -test.v=test2json -test.timeout=5m0s -test.run ^(TestEnvironment|TestOOMKill)$\n",
		"run name=uid1000 uid=1000 parent=/e2e-u1000 cgroup=/e2e-u1000/vatrun-supervisor",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("manifest lacks %q:\n%s", want, m)
		}
	}
	if strings.Contains(m, "swingset") {
		t.Errorf("main manifest has the swingset run:\n%s", m)
	}
	m = makeManifest(c, &bootConfig{name: bootSwingSet, directives: []string{"module=/lib/modules/a.ko", "hostroot=/host"}, env: []string{"X=1"}}, runs[2:])
	for _, want := range []string{
		"module=/lib/modules/a.ko\nhostroot=/host\nrun name=swingset uid=0 parent=/e2e-swingset cgroup=/e2e-swingset/vatrun-supervisor timeout=5m0s env=VATRUN_E2E_STRICT=1 env=X=1 env=VATRUN_BIN=/bin/vatrun ",
		"-test.run ^(TestSwingSetKernelOOM)$\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("swingset manifest lacks %q:\n%s", want, m)
		}
	}
	// Benchmarks only when the filter names them; a container's command (TestInside*) never.
	c.filter = nil
	if runs := planRuns(c, []string{"TestEnvironment", "TestBenchSpawn", "TestInsideContainer"}); len(runs) != 1 || strings.Join(runs[0].tests, ",") != "TestEnvironment" {
		t.Errorf("without a filter: runs = %+v, want TestEnvironment only", runs)
	}
	c.filter = regexp.MustCompile("^TestBench")
	if runs := planRuns(c, []string{"TestEnvironment", "TestBenchSpawn"}); len(runs) != 1 || strings.Join(runs[0].tests, ",") != "TestBenchSpawn" {
		t.Errorf("with a TestBench filter: runs = %+v, want TestBenchSpawn", runs)
	}
	c.filter = regexp.MustCompile("^TestEnv")
	if runs := planRuns(c, []string{"TestEnvironment", "TestUnprivX"}); len(runs) != 1 {
		t.Errorf("a run with no tests was planned: %+v", runs)
	}
}

func TestElfDeps(t *testing.T) {
	// A script has no dependencies.
	if deps, err := elfDeps("setup.sh"); err != nil || len(deps) != 0 {
		t.Errorf("setup.sh: %v %v", deps, err)
	}
	const prog = "/bin/true"
	f, err := elf.Open(prog)
	if err != nil {
		t.Skipf("%s: %v", prog, err)
	}
	libs, _ := f.ImportedLibraries()
	f.Close()
	deps, err := elfDeps(prog)
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) > 0 {
		joined := strings.Join(deps, " ")
		if !strings.Contains(joined, "ld-linux") || !strings.Contains(joined, "libc.so") {
			t.Errorf("%s deps = %v, want the loader and libc", prog, deps)
		}
	}
}
