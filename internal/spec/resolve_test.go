package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestResolveFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "scenes.txt"), []byte("a.bin\r\n\n  \nb.bin\nc.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `name: j
x-defaults: &d {retries: 2, command: [sim, "{item}"]}
tasks:
  - key: "sim-{item}"
    foreach: {lines: scenes.txt}
    <<: *d
  - key: "again-{i}"
    foreach: {lines: scenes.txt}
    command: [x, 0x1F, 1_000, 1e9, .inf, true]
    after: ["sim-*"]
`
	out, err := ResolveFiles([]byte(src), "job.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(out) {
		t.Fatalf("not JSON:\n%s", out)
	}
	if strings.Contains(string(out), "lines") || strings.Contains(string(out), "<<") {
		t.Errorf("lines or merge key left in:\n%s", out)
	}
	j, _, err := Compile(out, "job.yaml", Limits{})
	if err != nil {
		t.Fatalf("Compile(resolved): %v\n%s", err, out)
	}
	var keys []string
	for _, t := range j.Tasks {
		keys = append(keys, t.Key)
	}
	if want := []string{"sim-a.bin", "sim-b.bin", "sim-c.bin", "again-0", "again-1", "again-2"}; !slices.Equal(keys, want) {
		t.Errorf("keys = %q, want %q", keys, want)
	}
	if got := j.Tasks[1]; !slices.Equal(got.Command, []string{"sim", "b.bin"}) || got.Retries != 2 {
		t.Errorf("task = %+v", got)
	}
	if got := j.Tasks[4].Command; !slices.Equal(got, []string{"x", "0x1F", "1_000", "1e9", ".inf", "true"}) {
		t.Errorf("scalars changed through JSON: %q", got)
	}
}

func TestResolveFilesScalars(t *testing.T) {
	t.Parallel()
	src := "name: j\ntasks:\n  - {key: a, command: [x, 0x1F, 1_000, 1e9, .inf, true, True, '1', \"\\x01\\u0085\\ufeff\"]}\n"
	out, err := ResolveFiles([]byte(src), "job.yaml", ".")
	if err != nil {
		t.Fatal(err)
	}
	want, _, err := Compile([]byte(src), "job.yaml", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Compile(out, "job.yaml", Limits{})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resolved command %q, want %q\n%s", got.Tasks[0].Command, want.Tasks[0].Command, out)
	}
}

func TestResolveFilesErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "empty.txt"), []byte("\n \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nul.txt"), []byte("a\nb\x00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, src, want string
	}{
		{
			name: "missing file",
			src:  "name: j\ntasks:\n  - key: \"s-{item}\"\n    foreach: {lines: nope.txt}\n    command: [x]\n",
			want: `job.yaml:4: task "s-{item}" (tasks[0]) field foreach.lines: open ` + filepath.Join(dir, "nope.txt") + `: no such file or directory`,
		},
		{
			name: "no lines",
			src:  "name: j\ntasks:\n  - {key: \"s-{item}\", command: [x], foreach: {lines: empty.txt}}\n",
			want: `job.yaml:3: task "s-{item}" (tasks[0]) field foreach.lines: ` + filepath.Join(dir, "empty.txt") + ` has no lines: the entry would have no tasks`,
		},
		{
			name: "NUL in a line",
			src:  "name: j\ntasks:\n  - {key: \"s-{item}\", command: [x], foreach: {lines: nul.txt}}\n",
			want: `job.yaml:3: task "s-{item}" (tasks[0]) field foreach.lines: ` + filepath.Join(dir, "nul.txt") + `:2: contains a NUL byte`,
		},
		{
			name: "not a file name",
			src:  "name: j\ntasks:\n  - {key: \"s-{item}\", command: [x], foreach: {lines: [a]}}\n",
			want: `job.yaml:3: task "s-{item}" (tasks[0]) field foreach.lines: must name a file, got a list`,
		},
		{
			name: "syntax",
			src:  "name: [\n",
			want: `job.yaml:1: did not find expected node content`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ResolveFiles([]byte(tt.src), "job.yaml", dir)
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want Errors", err)
			}
			if err.Error() != tt.want {
				t.Errorf("err = %q\nwant  %q", err, tt.want)
			}
		})
	}
}
