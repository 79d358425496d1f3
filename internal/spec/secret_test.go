package spec

import (
	"bytes"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
)

func TestSecretEnvCompiles(t *testing.T) {
	t.Parallel()
	src := `
name: s
env: {PLAIN: p}
secret_env:
  DB_PASSWORD: hunter2-value
  API_KEY: "k-3141"
tasks:
  - key: a
    command: [run]
    env: {OWN: o}
`
	j, _, err := Compile([]byte(src), "s.yaml", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"DB_PASSWORD": "hunter2-value", "API_KEY": "k-3141"}
	if !maps.Equal(j.SecretEnv, want) {
		t.Errorf("SecretEnv = %v, want %v", j.SecretEnv, want)
	}
	if !maps.Equal(j.Env, map[string]string{"PLAIN": "p"}) {
		t.Errorf("Env = %v: secrets must not be in it", j.Env)
	}
	if !maps.Equal(j.Tasks[0].Env, map[string]string{"OWN": "o"}) {
		t.Errorf("task env = %v: secrets must not be in it", j.Tasks[0].Env)
	}
}

func TestSecretEnvRejected(t *testing.T) {
	t.Parallel()
	const value = "s3cr3t-value-xyz"
	for _, tc := range []struct {
		name, src, field, msg string
	}{
		{"collides with job env", "name: s\nenv: {A: x}\nsecret_env: {A: " + value + "}\ntasks: [{key: a, command: [x]}]\n",
			"secret_env.A", "also in the job's env"},
		{"collides with task env", "name: s\nsecret_env: {A: " + value + "}\ntasks: [{key: a, command: [x], env: {A: y}}]\n",
			"env.A", "also in the job's secret_env"},
		{"HAUL_ name", "name: s\nsecret_env: {HAUL_TOKEN: " + value + "}\ntasks: [{key: a, command: [x]}]\n",
			"secret_env.HAUL_TOKEN", "reserved"},
		{"bad name", "name: s\nsecret_env: {\"a b\": " + value + "}\ntasks: [{key: a, command: [x]}]\n",
			"secret_env.a b", "bad variable name"},
		{"not a string", "name: s\nsecret_env: {A: [" + value + "]}\ntasks: [{key: a, command: [x]}]\n",
			"secret_env.A", "must be a string"},
		{"not a mapping", "name: s\nsecret_env: [" + value + "]\ntasks: [{key: a, command: [x]}]\n",
			"secret_env", "must be a mapping"},
		{"NUL", "name: s\nsecret_env: {A: \"" + value + "\\0\"}\ntasks: [{key: a, command: [x]}]\n",
			"secret_env.A", "NUL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := Compile([]byte(tc.src), "s.yaml", Limits{})
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("err = %v, want Errors", err)
			}
			found := false
			for _, e := range es {
				if e.Field == tc.field && strings.Contains(e.Msg, tc.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("err = %v, want field %s: %q", err, tc.field, tc.msg)
			}
			if strings.Contains(err.Error(), value) {
				t.Errorf("the error shows the secret value: %v", err)
			}
		})
	}
}

func TestSecretEnvCountsAgainstArgLimit(t *testing.T) {
	t.Parallel()
	src := "name: s\nsecret_env: {A: " + strings.Repeat("x", 200) + "}\ntasks: [{key: a, command: [x]}]\n"
	_, _, err := Compile([]byte(src), "s.yaml", Limits{MaxArgBytes: 150})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge (argv and environment)", err)
	}
	if strings.Contains(err.Error(), strings.Repeat("x", 20)) {
		t.Errorf("the error shows the secret value: %v", err)
	}
}

func TestFragmentSecretNames(t *testing.T) {
	t.Parallel()
	base := Base{SecretEnv: map[string]string{"DB_PASSWORD": ""}}
	_, err := CompileFragment([]byte("tasks: [{key: b, command: [x], env: {DB_PASSWORD: y}}]\n"), "f.yaml", base)
	if err == nil || !strings.Contains(err.Error(), "secret_env") {
		t.Errorf("err = %v, want the collision with secret_env named", err)
	}
	_, err = CompileFragment([]byte("secret_env: {B: y}\ntasks: [{key: b, command: [x]}]\n"), "f.yaml", base)
	if err == nil || !strings.Contains(err.Error(), "cannot be changed by adding tasks") {
		t.Errorf("err = %v, want secret_env refused in a fragment", err)
	}
	base.SecretEnv["DB_PASSWORD"] = strings.Repeat("x", 200)
	base.Limits.MaxArgBytes = 150
	if _, err := CompileFragment([]byte("tasks: [{key: b, command: [x]}]\n"), "f.yaml", base); !errors.Is(err, ErrTooLarge) {
		t.Errorf("err = %v, want ErrTooLarge: the secret values count", err)
	}
}

// redactCase compiles src, redacts it, and checks that no secret value
// survives in the redacted text, that the redacted text compiles to the same
// job but for the secret values, and that it names the secrets.
func redactCase(t *testing.T, src string, secrets ...string) []byte {
	t.Helper()
	j, _, err := Compile([]byte(src), "s.yaml", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := RedactSecrets([]byte(src))
	if err != nil {
		t.Fatalf("RedactSecrets: %v", err)
	}
	for _, s := range secrets {
		if bytes.Contains(out, []byte(s)) {
			t.Errorf("the secret %q survives in the redacted spec:\n%s", s, out)
		}
	}
	r, _, err := Compile(out, "redacted.yaml", Limits{})
	if err != nil {
		t.Fatalf("the redacted spec does not compile: %v\n%s", err, out)
	}
	if len(r.SecretEnv) != len(j.SecretEnv) {
		t.Errorf("redacted secret_env %v, want the names of %d", r.SecretEnv, len(j.SecretEnv))
	}
	var names []string
	for n, v := range r.SecretEnv {
		if v != SecretPlaceholder {
			t.Errorf("redacted %s = %q, want %q", n, v, SecretPlaceholder)
		}
		names = append(names, n)
	}
	j.SecretEnv, r.SecretEnv = nil, nil
	if !reflect.DeepEqual(j, r) {
		t.Errorf("the redacted spec compiles to\n%+v\nwant\n%+v", r, j)
	}
	got := SecretNames(out)
	if len(got) != len(names) {
		t.Errorf("SecretNames = %v, want %v", got, names)
	}
	for _, n := range got {
		if _, ok := j.Env[n]; ok {
			t.Errorf("SecretNames names the plain %s", n)
		}
	}
	retries, timeout, err := BaseOf(out)
	if err != nil || retries != j.Retries || timeout != j.TimeoutMS {
		t.Errorf("BaseOf(redacted) = %d, %d, %v; want %d, %d", retries, timeout, err, j.Retries, j.TimeoutMS)
	}
	return out
}

func TestRedactSecrets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		secrets   []string
	}{
		{"plain", `# a comment
name: s
retries: 3
timeout: 1m
env: {PLAIN: p}
secret_env:
  DB_PASSWORD: hunter2-value   # the database
  API_KEY: 'k-3141-quoted'
tasks:
  - key: "a-{i}"
    foreach: {range: [0, 3]}
    command: [run, "{i}"]
`, []string{"hunter2-value", "k-3141-quoted"}},
		{"block scalar", "name: s\nsecret_env:\n  CERT: |\n    -----BEGIN-----\n    line-two-of-cert\n  KEY: >-\n    folded-key\n    more\ntasks: [{key: a, command: [x]}]\n",
			[]string{"BEGIN", "line-two-of-cert", "folded-key"}},
		{"anchored value", "name: s\nx-pw: &pw anchored-pw\nsecret_env: {A: *pw}\ntasks: [{key: a, command: [x]}]\n",
			[]string{"anchored-pw"}},
		{"anchored mapping", "name: s\nx-s: &s {A: map-pw, B: other-pw}\nsecret_env: *s\ntasks: [{key: a, command: [x]}]\n",
			[]string{"map-pw", "other-pw"}},
		{"merge key", "x-base: &b\n  secret_env: {A: merged-pw}\n<<: *b\nname: s\ntasks: [{key: a, command: [x]}]\n",
			[]string{"merged-pw"}},
		{"merge inside secret_env", "x-s: &s {A: inner-pw}\nname: s\nsecret_env: {<<: *s, B: outer-pw}\ntasks: [{key: a, command: [x]}]\n",
			[]string{"inner-pw", "outer-pw"}},
		{"JSON", `{"name": "s", "secret_env": {"A": "json-pw\/x"}, "tasks": [{"key": "a", "command": ["x"]}]}`,
			[]string{"json-pw"}},
		{"empty value", "name: s\nsecret_env: {A: ''}\ntasks: [{key: a, command: [x]}]\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			redactCase(t, tc.src, tc.secrets...)
		})
	}
}

func TestRedactSecretsKeepsOthers(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"name: s\ntasks: [{key: a, command: [x]}]\n",
		"name: s\nsecret_env:\ntasks: [{key: a, command: [x]}]\n",
	} {
		out, err := RedactSecrets([]byte(src))
		if err != nil || string(out) != src {
			t.Errorf("RedactSecrets(%q) = %q, %v; want it unchanged", src, out, err)
		}
		if n := SecretNames(out); n != nil {
			t.Errorf("SecretNames = %v, want none", n)
		}
	}
	// A spec without secrets cannot pose as one that has some.
	spoof := secretHeader + " FAKE\nname: s\ntasks: [{key: a, command: [x]}]\n"
	out, err := RedactSecrets([]byte(spoof))
	if err != nil {
		t.Fatal(err)
	}
	if n := SecretNames(out); n != nil {
		t.Errorf("SecretNames = %v, want none for a spec without secret_env", n)
	}
	if _, _, err := Compile(out, "s.yaml", Limits{}); err != nil {
		t.Errorf("the stored spoof no longer compiles: %v", err)
	}
}

func TestRedactSecretsBadInput(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		"",
		"[1, 2]",
		"name: s\nsecret_env: [leaked-pw]\n",
		"name: s\nsecret_env: {A: [leaked-pw]}\n",
		"name: s\nsecret_env: {A: {b: leaked-pw}}\n",
	} {
		out, err := RedactSecrets([]byte(src))
		if err == nil {
			t.Errorf("RedactSecrets(%q) = %q, want an error", src, out)
			continue
		}
		if strings.Contains(err.Error(), "leaked-pw") {
			t.Errorf("RedactSecrets(%q): the error shows the value: %v", src, err)
		}
	}
}
