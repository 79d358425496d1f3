//go:build cgo

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/history/historytest"
)

func runQuery(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestRowCounts(t *testing.T) {
	dir := t.TempDir()
	f := historytest.Export(t, dir)
	for _, table := range history.Tables {
		out, errs, code := runQuery(t, "--dir", dir, "--format", "csv", "SELECT count(*) AS n FROM "+table)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", table, code, errs)
		}
		want := "n\n" + itoa(f.Rows[table]) + "\n"
		if out != want {
			t.Errorf("%s: %q; want %q", table, out, want)
		}
	}
	// Values, nested ones included, and the partition column.
	out, errs, code := runQuery(t, "--dir", dir, "--format", "json",
		"SELECT id, team, date, labels['run'] AS run, tiers[2].tolerations[1].effect AS effect, counts.succeeded AS ok, finished_at FROM jobs ORDER BY finished_at")
	if code != 0 {
		t.Fatal(errs)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rows) != 3 {
		t.Fatalf("%d rows: %s", len(rows), out)
	}
	want := map[string]any{"id": f.Resim, "team": "perception", "date": "2026-11-02", "run": "nightly", "effect": "NoSchedule", "ok": 6.0, "finished_at": "2026-11-02T10:00:00Z"}
	for k, v := range want {
		if rows[0][k] != v {
			t.Errorf("resim %s = %v; want %v", k, rows[0][k], v)
		}
	}
	if rows[1]["id"] != f.Tiles || rows[1]["effect"] != nil || rows[2]["id"] != f.Resim2 || rows[2]["date"] != "2026-11-03" {
		t.Errorf("rows %v", rows)
	}
	// Flags after the SQL; a map and a list as JSON text in CSV.
	out, _, code = runQuery(t, "SELECT key, argv, env FROM tasks WHERE key = 'report'", "--dir", dir, "--format", "csv")
	if want := "key,argv,env\nreport,\"[\"\"run\"\",\"\"report\"\"]\",\"{\"\"KEY\"\":\"\"report\"\"}\"\n"; code != 0 || out != want {
		t.Errorf("csv: %d %q; want %q", code, out, want)
	}
	// The table format: aligned, NULL, a row count.
	out, _, _ = runQuery(t, "--dir", dir, "SELECT 'a' AS x, NULL AS longer_name UNION ALL SELECT 'bbbb', 1 ORDER BY x")
	if want := "x     longer_name\n-     -----------\na     NULL\nbbbb  1\n(2 rows)\n"; out != want {
		t.Errorf("table:\n%s\nwant:\n%s", out, want)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestMissingTable(t *testing.T) {
	dir := t.TempDir()
	historytest.Export(t, dir)
	// A folder with no Parquet file gets no view.
	if err := os.RemoveAll(filepath.Join(dir, "workers")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "workers", "date=2026-11-02"), 0o755); err != nil {
		t.Fatal(err)
	}
	tables, err := Tables(dir)
	if err != nil || strings.Join(tables, " ") != "attempts jobs log_entries tasks" {
		t.Errorf("Tables = %v, %v", tables, err)
	}
	_, errs, code := runQuery(t, "--dir", dir, "SELECT * FROM workers")
	if code != 1 || !strings.Contains(errs, "workers does not exist") {
		t.Errorf("query of a table with no files: exit %d, %q", code, errs)
	}
	if _, _, code := runQuery(t, "--dir", dir); code != 2 {
		t.Errorf("no SQL: exit %d; want 2", code)
	}
	if _, _, code := runQuery(t, "--dir", dir, "--format", "xml", "SELECT 1"); code != 2 {
		t.Errorf("bad format: exit %d; want 2", code)
	}
}

// TestDocExamples runs every SQL example of docs/history.md against the
// fixture's export and compares the result with the one the document
// shows under it (an indented block: the header and the rows).
func TestDocExamples(t *testing.T) {
	dir := t.TempDir()
	historytest.Export(t, dir)
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "history.md"))
	if err != nil {
		t.Fatal(err)
	}
	examples := 0
	lines := strings.Split(string(doc), "\n")
	for i := 0; i < len(lines); i++ {
		if lines[i] != "```sql" {
			continue
		}
		var q []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			q = append(q, lines[i])
		}
		for i++; i < len(lines) && lines[i] == ""; i++ {
		}
		var want []string
		for ; i < len(lines) && strings.HasPrefix(lines[i], "    "); i++ {
			want = append(want, strings.Join(strings.Fields(lines[i]), " "))
		}
		examples++
		sql := strings.Join(q, "\n")
		out, errs, code := runQuery(t, "--dir", dir, sql)
		if code != 0 {
			t.Errorf("example %d: exit %d: %s\n%s", examples, code, errs, sql)
			continue
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(l, "(") || strings.Trim(l, "- ") == "" {
				continue // the row count and the rule under the header
			}
			got = append(got, strings.Join(strings.Fields(l), " "))
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("example %d:\n%s\ngot:\n%s\nthe document shows:\n%s", examples, sql, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if examples < 4 {
		t.Errorf("%d SQL examples in docs/history.md; want at least 4", examples)
	}
}
