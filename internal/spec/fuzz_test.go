package spec

import (
	"reflect"
	"testing"
)

// fuzzLimits keep every fuzzed spec small, so a bug that expands input
// shows as a limit error, not as the fuzzer running out of memory.
var fuzzLimits = Limits{MaxTasks: 1000, MaxSpecBytes: 1 << 16, MaxArgBytes: 4096, MaxKeyLen: 64}

var compileSeeds = []string{
	"name: j\ntasks: [{key: a, command: [x]}]\n",
	"name: j\ntasks:\n  - {key: split, command: [x]}\n  - {key: \"s-{i}\", command: [x, \"{i}\"], foreach: {range: [0, 5]}, after: [split]}\n  - {key: r, command: [x], after: [\"s-*\"]}\n",
	"name: j\ntasks:\n  - {key: \"f-{item}\", command: [cat, \"{item}\"], env: {I: \"{i}\"}, foreach: {values: [a, b, 3]}}\n",
	"{\"name\": \"j\", \"tasks\": [{\"key\": \"a\", \"command\": [\"x\"], \"after\": [\"b\"]}, {\"key\": \"b\", \"command\": [\"y\"], \"after\": [\"a\"]}]}",
	"name: j\nworkers: [{name: s, cpu: 500m, memory: 1Gi}, {name: b, cpu: 2, memory: 1e9, gpu: 1}]\ntasks: [{key: a, command: [x], worker: b, timeout: 1h, retries: 3}]\n",
	"x-d: &d {command: [x]}\nname: j\ntasks: [{key: a, <<: *d}, {key: b, <<: *d, after: [a]}]\n",
	"name: j\ntasks: [{key: \"s{i}\", command: [x], foreach: {range: [0, 99999999999]}}]\n",
	"name: j\ntasks: [{key: \"s{i}\", command: [\"${{HOME}\"], foreach: {range: [9, 0, -3]}}]\n",
	"a: &a [x, x]\nb: &b [*a, *a]\n",
	"name: j\ntasks: [{key: a, command: [x], foreach: {lines: f.txt}}]\n",
	"x-p: &p pw\nname: j\nenv: {A: a}\nsecret_env: {S: *p, T: \"t\"}\ntasks: [{key: a, command: [x]}]\n",
}

func FuzzCompile(f *testing.F) {
	for _, s := range compileSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j, g, err := Compile(data, "fuzz.yaml", fuzzLimits)
		if err != nil {
			if _, ok := err.(Errors); !ok {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			return
		}
		if len(j.Tasks) == 0 || len(j.Tasks) > fuzzLimits.MaxTasks || g.N != len(j.Tasks) {
			t.Fatalf("%d tasks, graph of %d", len(j.Tasks), g.N)
		}
		for _, task := range j.Tasks {
			if msg := badKey(task.Key, fuzzLimits.MaxKeyLen); msg != "" {
				t.Fatalf("accepted a bad key: %s", msg)
			}
			if len(task.Command) == 0 || task.Command[0] == "" {
				t.Fatalf("accepted task %q without a program", task.Key)
			}
			if int(task.Tier) >= len(j.Workers) || task.Tier < 0 {
				t.Fatalf("task %q on tier %d of %d", task.Key, task.Tier, len(j.Workers))
			}
		}
		// What a server stores compiles to the same job, its secret
		// values replaced.
		red, err := RedactSecrets(data)
		if err != nil {
			t.Fatalf("Compile accepted what RedactSecrets refused: %v", err)
		}
		if len(j.SecretEnv) > 0 {
			jr, _, err := Compile(red, "redacted.yaml", Limits{MaxTasks: fuzzLimits.MaxTasks, MaxKeyLen: fuzzLimits.MaxKeyLen})
			if err != nil {
				t.Fatalf("the redacted spec does not compile: %v\n%s", err, red)
			}
			for n, v := range jr.SecretEnv {
				if v != SecretPlaceholder || j.SecretEnv[n] == "" && v == "" {
					t.Fatalf("redacted %s = %q", n, v)
				}
			}
			if len(jr.SecretEnv) != len(j.SecretEnv) || len(SecretNames(red)) != len(j.SecretEnv) {
				t.Fatalf("redacted secret_env %v, names %v, want the names of %v", jr.SecretEnv, SecretNames(red), j.SecretEnv)
			}
			jr.SecretEnv = j.SecretEnv
			if !reflect.DeepEqual(j, jr) {
				t.Fatalf("the redacted spec compiles differently:\n%+v\n%+v\n%s", j, jr, red)
			}
		}
		// The JSON the CLI sends must compile to the same job.
		out, err := ResolveFiles(data, "fuzz.yaml", t.TempDir())
		if err != nil {
			t.Fatalf("Compile accepted what ResolveFiles refused: %v", err)
		}
		if len(out) > fuzzLimits.MaxSpecBytes {
			return // aliases expanded past the small limit
		}
		j2, _, err := Compile(out, "fuzz.json", fuzzLimits)
		if err != nil {
			t.Fatalf("the resolved spec does not compile: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(j, j2) {
			t.Fatalf("the resolved spec compiles differently:\n%+v\n%+v\n%s", j, j2, out)
		}
	})
}

func FuzzQuantity(f *testing.F) {
	for _, s := range []string{"1", "512Mi", "1Gi", "1G", "1e9", "1.5Gi", "500m", "0", "-1", "1e-3", "8Ei", "9E", ".5", "+5", "1E", "1e", "1ex", "1 Gi"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseBytes(s); err == nil {
			if n < 0 {
				t.Fatalf("ParseBytes(%q) = %d", s, n)
			}
			back, err := ParseBytes(FormatBytes(n))
			if err != nil || back != n {
				t.Fatalf("ParseBytes(FormatBytes(%d)) = %d, %v", n, back, err)
			}
		}
		if c, err := ParseCPU(s); err == nil && (c <= 0 || c > maxCPU) {
			t.Fatalf("ParseCPU(%q) = %v", s, c)
		}
		_, _ = parseDuration(s)
		_, _ = parseInt(s)
	})
}
