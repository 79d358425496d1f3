package cli

import (
	"os/exec"
	"strings"
	"testing"
)

// TestReproCommandSecrets checks that a secret variable is written as a
// reference to the user's own shell variable, never a value, and that the
// command then runs with the value the user exported.
func TestReproCommandSecrets(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PLAIN": "p v"}
	cmd := reproCommand([]string{"sh", "-c", `printf '%s|%s' "$PLAIN" "$DB_PASSWORD"`}, env, "", "DB_PASSWORD", "bad name")
	if !strings.Contains(cmd, ` DB_PASSWORD="${DB_PASSWORD}" `) {
		t.Fatalf("repro command %s does not pass DB_PASSWORD from the shell", cmd)
	}
	if strings.Contains(cmd, "bad name") {
		t.Fatalf("repro command %s writes a name the shell cannot expand", cmd)
	}
	c := exec.Command("sh", "-c", cmd)
	c.Env = []string{"PATH=/usr/bin:/bin", "DB_PASSWORD=exported by me"}
	out, err := c.Output()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	if want := "p v|exported by me"; string(out) != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}
