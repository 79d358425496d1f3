package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/haul-dev/haul/internal/auth/oidctest"
)

// The web UI, driven in headless Chromium (Debian's chromium, which
// make test installs) against a real `haul up`: log in with SSO and with a
// pasted credential, watch a job submitted with the CLI update live, find
// its failed element and read its log, follow a live log, cancel a job
// after the page's confirmation, and see nothing of another team.
//
// With HAUL_UI_SCREENSHOTS=DIR the pages' screenshots are written there
// (docs/ui.md shows the ones in docs/ui/); otherwise to a temporary folder.

// chromium is the browser the tests drive.
func chromium(t testing.TB) string {
	for _, p := range []string{os.Getenv("HAUL_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := exec.LookPath(p); err == nil {
				return p
			}
		}
	}
	t.Fatal("no Chromium: install Debian's chromium (make test does: scripts/install-deps.sh), or set HAUL_CHROMIUM")
	return ""
}

// browser is one headless Chromium with its own profile (cookies).
type browser struct {
	t    testing.TB
	ctx  context.Context
	base string
	shot string // screenshot folder
}

func newBrowser(t testing.TB, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.WindowSize(1400, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
		// performance.memory in exact bytes (the benchmark reads it).
		chromedp.Flag("enable-precise-memory-info", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	shot := os.Getenv("HAUL_UI_SCREENSHOTS")
	if shot == "" {
		shot = t.TempDir()
	}
	b := &browser{t: t, ctx: ctx, base: base, shot: shot}
	// The first action starts the browser, which lives as long as the
	// context of that call: b.ctx, never one with a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/ui/config")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return b
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func sel(testid string) string { return `[data-testid="` + testid + `"]` }

// css selects the first element matching a CSS selector.
func css(s string) chromedp.CSS { return chromedp.CSS(s) }

// open navigates to a page of the UI.
func (b *browser) open(path string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.base + path))
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, js string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("browser: evaluate %s: %v", js, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is true.
func (b *browser) waitFor(what, js string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+js+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 3000) : ""`))
			cancel()
			b.screenshot("failed-" + strings.NewReplacer("/", "-", " ", "-").Replace(what))
			b.t.Fatalf("waiting for %s (%s): %v; the page says:\n%s", what, js, err, body)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// text is the text of the first element with a test id.
func (b *browser) text(testid string) string {
	b.t.Helper()
	return strings.TrimSpace(eval[string](b, `(document.querySelector('`+sel(testid)+`') || {}).textContent || ""`))
}

func (b *browser) count(state string) int {
	n, _ := strconv.Atoi(strings.ReplaceAll(b.text("count-"+state), ",", ""))
	return n
}

func (b *browser) click(testid string) {
	b.t.Helper()
	b.run(chromedp.Click(css(sel(testid))))
}

func (b *browser) screenshot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shot, name+".png"), png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
	}
}

// loginToken logs in on the login page with a pasted credential.
func (b *browser) loginToken(tok string) {
	b.t.Helper()
	b.open("/login")
	b.run(chromedp.WaitVisible(css(sel("login-token"))),
		chromedp.SendKeys(css(sel("login-token")), tok))
	b.click("login-submit")
	b.waitFor("the logged-in user", `document.querySelector('`+sel("whoami")+`')`, 20*time.Second)
}

func TestWebUI(t *testing.T) {
	t.Parallel()
	iss := oidctest.New(t)
	s := startUp(t, freePort(t), t.TempDir(), "", "--oidc-issuer", iss.URL, "--oidc-client-id", "haul")
	idToken := func(email string, groups ...string) string {
		c := iss.Claims(email, "haul")
		c["email"], c["email_verified"], c["groups"] = email, true, groups
		return iss.Issue(t, c)
	}
	alice := idToken("alice@example.com", "team-a")
	as := func(tok string, args ...string) result {
		return haul(t, []string{"HAUL_SERVER=" + s.url(), "HAUL_API_TOKEN=" + tok}, args...)
	}
	submitAs := func(tok, spec string) string {
		t.Helper()
		r := as(tok, "job", "submit", writeSpec(t, spec))
		if r.code != 0 {
			t.Fatalf("submit: %d %s", r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}

	// A browser that nobody logged in to is sent to the login page; a
	// wrong token is refused there with the server's reason.
	b := newBrowser(t, s.url())
	b.open("/jobs")
	b.waitFor("the login page", `document.querySelector('`+sel("login-token")+`')`, 20*time.Second)
	b.run(chromedp.SendKeys(css(sel("login-token")), "haul_notatoken_x"))
	b.click("login-submit")
	b.waitFor("the login error", `(document.querySelector('`+sel("login-error")+`') || {}).textContent`, 20*time.Second)
	b.screenshot("login")

	// Alice logs in with SSO (the issuer's code flow with PKCE).
	iss.LogInAs(map[string]any{"sub": "alice", "email": "alice@example.com", "email_verified": true, "groups": []string{"team-a"}})
	b.open("/login")
	b.run(chromedp.WaitVisible(css(sel("login-sso"))))
	b.click("login-sso")
	b.waitFor("alice logged in", `(document.querySelector('`+sel("whoami")+`') || {}).textContent === "alice@example.com"`, 30*time.Second)

	// A job with a failing element among a foreach, a slow element that
	// keeps the job running while the page watches, and a merge after
	// them.
	job := submitAs(alice, `name: ui-sweep
namespace: team-a
labels: {stage: sim}
tasks:
  - key: prep
    command: [sh, -c, "echo preparing"]
  - key: "sim-{i}"
    foreach: {range: [0, 12]}
    command: [sh, -c, "if [ {i} = 7 ]; then echo 'boom: element 7 diverged' >&2; exit 3; fi; echo sim {i} ok"]
    after: [prep]
  - key: slow
    command: [sh, -c, "for n in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo tick $n; sleep 0.4; done"]
    after: [prep]
  - key: merge
    command: [sh, -c, "echo merged"]
    after: ["sim-*", slow]
`)
	b.open("/jobs/" + job)
	b.waitFor("the job page", `document.querySelector('`+sel("job-state")+`')`, 20*time.Second)
	b.waitFor("the graph", `document.querySelector('`+sel("job-graph")+`[data-loaded="true"]')`, 20*time.Second)
	// The page updates by itself (a server stream): it shows slow
	// running, then the job's end, with no reload in between.
	b.eval0(`window.__haulNoReload = true`)
	b.waitFor("slow running on the page", `(document.querySelector('`+sel("count-running")+`') || {}).textContent && document.querySelector('`+sel("count-running")+`').textContent.trim() !== "0"`, 60*time.Second)
	b.waitFor("the job's end on the page", `(document.querySelector('`+sel("job-state")+`') || {}).textContent.includes("failed")`, 90*time.Second)
	b.waitFor("final counts", `document.querySelector('`+sel("count-succeeded")+`') && document.querySelector('`+sel("count-succeeded")+`').textContent.trim() === "13"`, 20*time.Second)
	if !eval[bool](b, `window.__haulNoReload === true`) {
		t.Errorf("the job page reloaded; it should update in place")
	}
	if got := b.count("failed"); got != 1 {
		t.Errorf("failed count on the page: %d, want 1", got)
	}
	if got := b.count("upstream_failed"); got != 1 {
		t.Errorf("upstream_failed count on the page: %d, want 1 (merge)", got)
	}
	groups := eval[[]string](b, `[...document.querySelectorAll('`+sel("graph-node")+`')].map(n => n.dataset.group)`)
	if strings.Join(groups, ",") == "" || len(groups) != 4 {
		t.Errorf("graph nodes %v: want the 4 spec entries (prep, sim-{i}, slow, merge), not one per task", groups)
	}
	critical := eval[[]string](b, `[...document.querySelectorAll('`+sel("graph-node")+`[data-critical="true"]')].map(n => n.dataset.group)`)
	slices.Sort(critical)
	// The job ended when slow did (merge was given up on when sim-7
	// failed, long before): prep, then slow.
	if strings.Join(critical, ",") != "prep,slow" {
		t.Errorf("critical path %v: want prep and slow (slow ended last)", critical)
	}
	b.screenshot("job")

	// Find the failed element with the server-side filter and read its log.
	b.open("/jobs/" + job + "/tasks?state=failed")
	b.waitFor("the failed tasks", `document.querySelector('`+sel("tasks-table")+`[data-loaded="true"]')`, 20*time.Second)
	keys := eval[[]string](b, `[...document.querySelectorAll('`+sel("task-row")+`')].map(r => r.dataset.key)`)
	if len(keys) != 1 || keys[0] != "sim-7" {
		t.Fatalf("failed tasks on the page: %v, want [sim-7]", keys)
	}
	b.screenshot("tasks")
	b.run(chromedp.Click(css(sel("task-row") + `[data-key="sim-7"] a`)))
	b.waitFor("the task page", `location.pathname.endsWith("/tasks/sim-7")`, 20*time.Second)
	b.waitFor("its log", `(document.querySelector('`+sel("log-view")+`') || {}).textContent && document.querySelector('`+sel("log-view")+`').textContent.includes("boom: element 7 diverged")`, 30*time.Second)
	if st := b.text("task-state"); !strings.Contains(st, "failed") {
		t.Errorf("task state on the page %q, want failed", st)
	}
	if rc := b.text("repro-command"); !strings.Contains(rc, job) || !strings.Contains(rc, "sim-7") {
		t.Errorf("repro command %q: want it to name the job and the task", rc)
	}
	attempts := eval[int](b, `document.querySelectorAll('`+sel("attempt-row")+`').length`)
	if attempts != 1 {
		t.Errorf("%d attempt rows, want 1", attempts)
	}
	href := eval[string](b, `(document.querySelector('`+sel("log-download")+`') || {}).href || ""`)
	if !strings.Contains(href, "/ui/logs/"+job+"/sim-7/") {
		t.Errorf("download link %q", href)
	}
	b.screenshot("task")

	// Follow a live log: the lines arrive while the page is open.
	live := submitAs(alice, `name: ui-live
namespace: team-a
tasks:
  - key: talk
    command: [sh, -c, "for n in $(seq 1 40); do echo line $n; sleep 0.25; done"]
  - key: wait
    command: [sleep, "120"]
`)
	b.open("/jobs/" + live + "/tasks/talk")
	b.waitFor("the first live lines", `(document.querySelector('`+sel("log-view")+`') || {}).textContent && document.querySelector('`+sel("log-view")+`').textContent.includes("line 2")`, 60*time.Second)
	early := eval[string](b, `document.querySelector('`+sel("log-view")+`').textContent`)
	if strings.Contains(early, "line 40") {
		t.Fatalf("the whole log was there at once; the test did not see it live: %q", early)
	}
	b.waitFor("later lines, followed", `document.querySelector('`+sel("log-view")+`').textContent.includes("line 30")`, 60*time.Second)
	b.screenshot("log-follow")

	// Cancel the job from its page, after the confirmation.
	b.open("/jobs/" + live)
	b.waitFor("the cancel button", `document.querySelector('`+sel("job-cancel")+`')`, 20*time.Second)
	b.click("job-cancel")
	b.waitFor("the confirmation", `document.querySelector('`+sel("confirm-dialog")+`')`, 10*time.Second)
	b.screenshot("cancel-confirm")
	b.click("confirm-cancel") // changing one's mind cancels nothing
	time.Sleep(time.Second)
	if r := as(alice, "job", "get", live, "-o", "json"); strings.Contains(r.stdout, `"cancel_requested": true`) {
		t.Fatalf("the job was cancelled although the confirmation was dismissed")
	}
	b.click("job-cancel")
	b.waitFor("the confirmation", `document.querySelector('`+sel("confirm-ok")+`')`, 10*time.Second)
	b.click("confirm-ok")
	b.waitFor("the job cancelled on the page", `(document.querySelector('`+sel("job-state")+`') || {}).textContent.includes("cancelled")`, 60*time.Second)

	// The jobs list, filtered by label.
	b.open("/jobs?label=stage%3Dsim")
	b.waitFor("the job list", `document.querySelector('`+sel("jobs-table")+`[data-loaded="true"]')`, 20*time.Second)
	ids := eval[[]string](b, `[...document.querySelectorAll('`+sel("job-row")+`')].map(r => r.dataset.jobId)`)
	if strings.Join(ids, ",") != job {
		t.Errorf("jobs with label stage=sim: %v, want [%s]", ids, job)
	}
	b.open("/jobs")
	b.waitFor("the job list", `document.querySelectorAll('`+sel("job-row")+`').length >= 2`, 20*time.Second)
	b.screenshot("jobs")

	// Bob, of team-b, pastes his credential in another browser: alice's
	// jobs are in neither his list nor at their address.
	bob := idToken("bob@example.com", "team-b")
	bobJob := submitAs(bob, "name: bobs\nnamespace: team-b\ntasks:\n  - {key: x, command: [\"true\"]}\n")
	b2 := newBrowser(t, s.url())
	b2.loginToken(bob)
	b2.open("/jobs")
	b2.waitFor("bob's job list", `document.querySelector('`+sel("job-row")+`[data-job-id="`+bobJob+`"]')`, 20*time.Second)
	ids = eval[[]string](b2, `[...document.querySelectorAll('`+sel("job-row")+`')].map(r => r.dataset.jobId)`)
	for _, id := range ids {
		if id == job || id == live {
			t.Errorf("bob sees alice's job %s in his list", id)
		}
	}
	b2.open("/jobs/" + job)
	b2.waitFor("a not-found answer", `document.body.innerText.toLowerCase().includes("not found") || document.body.innerText.toLowerCase().includes("does not exist")`, 20*time.Second)
	if st := b2.text("job-state"); st != "" {
		t.Errorf("bob's browser shows alice's job state %q", st)
	}

	// The platform admin sees teams and clusters, and drains and enables
	// a cluster from the page; alice sees the clusters without buttons.
	admin := func(args ...string) {
		t.Helper()
		if r := haul(t, []string{"HAUL_SERVER=" + s.url()}, args...); r.code != 0 {
			t.Fatalf("haul %v: %d %s", args, r.code, r.stderr)
		}
	}
	admin("quota", "set", "team-a", "cpu=8,memory=16Gi")
	admin("cluster", "register", "east", "--cpu", "64", "--memory", "256Gi", "--price-cpu-hour", "0.04", "--price-gib-hour", "0.005")
	clusterState := func() string {
		r := haul(t, []string{"HAUL_SERVER=" + s.url()}, "cluster", "list", "-o", "json")
		for _, state := range []string{"draining", "disabled", "enabled"} {
			if strings.Contains(r.stdout, `"`+state+`"`) {
				return state
			}
		}
		return r.stdout + r.stderr
	}
	b3 := newBrowser(t, s.url())
	b3.loginToken(s.token)
	b3.open("/teams")
	b3.waitFor("team-a's quota", `document.querySelector('`+sel("teams-table")+`') && document.querySelector('`+sel("teams-table")+`').textContent.includes("team-a")`, 20*time.Second)
	b3.screenshot("teams")
	b3.open("/clusters")
	b3.waitFor("east on the clusters page", `document.querySelector('`+sel("cluster-row")+`[data-cluster="east"] `+sel("cluster-drain")+`')`, 20*time.Second)
	b3.run(chromedp.Click(css(sel("cluster-row") + `[data-cluster="east"] ` + sel("cluster-drain"))))
	deadline := time.Now().Add(20 * time.Second)
	for clusterState() != "draining" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if st := clusterState(); st != "draining" {
		t.Fatalf("after Drain on the page the cluster is %s, want draining", st)
	}
	b3.waitFor("draining shown", `document.querySelector('`+sel("cluster-row")+`[data-cluster="east"]').textContent.includes("draining")`, 20*time.Second)
	b3.screenshot("clusters")
	b3.run(chromedp.Click(css(sel("cluster-row") + `[data-cluster="east"] ` + sel("cluster-enable"))))
	deadline = time.Now().Add(20 * time.Second)
	for clusterState() != "enabled" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if st := clusterState(); st != "enabled" {
		t.Fatalf("after Enable on the page the cluster is %s, want enabled", st)
	}
	b.open("/clusters")
	b.waitFor("east for alice", `document.querySelector('`+sel("cluster-row")+`[data-cluster="east"]')`, 20*time.Second)
	if n := eval[int](b, `document.querySelectorAll('`+sel("cluster-drain")+`, `+sel("cluster-enable")+`, `+sel("cluster-disable")+`').length`); n != 0 {
		t.Errorf("alice, not a platform admin, sees %d cluster buttons", n)
	}
}
