//go:build cgo

// Command haul-query runs SQL over haul's history export (package history)
// with DuckDB:
//
//	haul-query [--dir DIR] [--format table|csv|json] "SQL"
//
// Each folder of DIR that holds Parquet files (jobs, tasks, attempts,
// workers, log_entries: DIR/{table}/date=YYYY-MM-DD/*.parquet) becomes a
// view of that name, with the Hive partition column date; a table with no
// files has no view, and a query that names it fails with DuckDB's error.
// The result is printed as an aligned table (default), CSV with a header
// line, or a JSON array of objects.
//
// It is a binary of its own because DuckDB needs cgo, which the haul
// binary does without; `haul query` fetches an export from an object store
// into a local cache and runs this command on it. Build it with
//
//	go build -o bin/haul-query ./cmd/haul-query
//
// Exit status: 0 on success, 1 when the query fails, 2 for a usage error.
package main

import (
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/duckdb/duckdb-go/v2"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: haul-query [--dir DIR] [--format table|csv|json] "SQL"

Runs SQL over a haul history export: each folder of DIR holding Parquet
files (jobs, tasks, attempts, workers, log_entries) is a view of that name.
`

// run is the command: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("haul-query", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() { fmt.Fprint(stderr, usage); fl.PrintDefaults() }
	dir := fl.String("dir", ".", "the export's folder: DIR/{table}/date=YYYY-MM-DD/*.parquet")
	format := fl.String("format", "table", "output: table, csv or json")
	// Flags may come after the SQL too.
	var rest []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fl.NArg() == 0 {
			break
		}
		rest = append(rest, fl.Arg(0))
		args = fl.Args()[1:]
	}
	if len(rest) != 1 || strings.TrimSpace(rest[0]) == "" {
		fmt.Fprint(stderr, "haul-query: want one SQL statement (quote it)\n"+usage)
		return 2
	}
	switch *format {
	case "table", "csv", "json":
	default:
		fmt.Fprintf(stderr, "haul-query: --format %q: want table, csv or json\n", *format)
		return 2
	}
	if err := query(ctx, *dir, rest[0], *format, stdout); err != nil {
		fmt.Fprintf(stderr, "haul-query: %v\n", err)
		return 1
	}
	return 0
}

// viewName is what a folder must be called to become a view.
var viewName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Tables returns the folders of dir that hold at least one Parquet file
// (at any depth), sorted: the views a query may use.
func Tables(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() || !viewName.MatchString(e.Name()) {
			continue
		}
		found := errors.New("found")
		err := filepath.WalkDir(filepath.Join(dir, e.Name()), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(p, ".parquet") {
				return found
			}
			return nil
		})
		if errors.Is(err, found) {
			out = append(out, e.Name())
		} else if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

// query opens an in-memory DuckDB, creates the views of dir's tables, runs
// q and prints its result in format.
func query(ctx context.Context, dir, q, format string, w io.Writer) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	tables, err := Tables(abs)
	if err != nil {
		return fmt.Errorf("export folder: %w", err)
	}
	db, err := sql.Open("duckdb", "")
	if err != nil {
		return err
	}
	defer db.Close()
	// One connection: the views live in the connection's catalog.
	db.SetMaxOpenConns(1)
	for _, t := range tables {
		glob := filepath.ToSlash(filepath.Join(abs, t)) + "/**/*.parquet"
		stmt := fmt.Sprintf(`CREATE VIEW "%s" AS SELECT * FROM read_parquet('%s', hive_partitioning = true)`, t, strings.ReplaceAll(glob, "'", "''"))
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("view %s: %w", t, err)
		}
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	var out [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			vals[i] = plain(v, cols[i].DatabaseTypeName())
		}
		out = append(out, vals)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name()
	}
	switch format {
	case "csv":
		return printCSV(w, names, out)
	case "json":
		return printJSON(w, names, out)
	}
	return printTable(w, names, out)
}

// plain turns a value DuckDB returned into one of nil, bool, int64,
// float64, string, []any or map[string]any (a struct, or a map with its
// keys as text), so that every format prints it the same way. A DATE is
// its day (YYYY-MM-DD); other times are RFC 3339 in UTC.
func plain(v any, typ string) any {
	switch x := v.(type) {
	case nil, bool, string, int64, float64:
		return x
	case int8, int16, int32, int, uint8, uint16, uint32, uint64, uint:
		n, _ := strconv.ParseInt(fmt.Sprint(x), 10, 64)
		return n
	case float32:
		return float64(x)
	case *big.Int:
		return x.String()
	case []byte:
		return string(x)
	case time.Time:
		if typ == "DATE" {
			return x.UTC().Format(time.DateOnly)
		}
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case duckdb.Decimal:
		return x.Float64()
	case duckdb.Interval:
		return (time.Duration(x.Micros)*time.Microsecond + time.Duration(x.Days)*24*time.Hour).String() + monthsText(x.Months)
	case duckdb.OrderedMap:
		keys, vals := x.Keys(), x.Values()
		m := make(map[string]any, len(keys))
		for i, k := range keys {
			m[text(plain(k, ""), "")] = plain(vals[i], "")
		}
		return m
	case duckdb.Map:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[text(plain(k, ""), "")] = plain(e, "")
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = plain(e, "")
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = plain(e, "")
		}
		return l
	}
	return fmt.Sprint(v)
}

func monthsText(m int32) string {
	if m == 0 {
		return ""
	}
	return fmt.Sprintf(" %d months", m)
}

// text is a value in one cell of the table or CSV output: NULL as the
// empty string in CSV and "NULL" in a table, lists, maps and structs as
// JSON.
func text(v any, null string) string {
	switch x := v.(type) {
	case nil:
		return null
	case string:
		return x
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any, map[string]any:
		b, err := json.Marshal(jsonable(x))
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
	return fmt.Sprint(v)
}

// jsonable replaces floats JSON cannot hold (NaN, infinities) by strings.
func jsonable(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = jsonable(e)
		}
		return l
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = jsonable(e)
		}
		return m
	}
	return v
}

func printTable(w io.Writer, names []string, rows [][]any) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	cell := func(s string) string {
		return strings.NewReplacer("\t", " ", "\n", `\n`, "\r", `\r`).Replace(s)
	}
	line := make([]string, len(names))
	for i, n := range names {
		line[i] = cell(n)
	}
	fmt.Fprintln(tw, strings.Join(line, "\t"))
	for i, n := range names {
		line[i] = strings.Repeat("-", max(len(n), 1))
	}
	fmt.Fprintln(tw, strings.Join(line, "\t"))
	for _, r := range rows {
		for i, v := range r {
			line[i] = cell(text(v, "NULL"))
		}
		fmt.Fprintln(tw, strings.Join(line, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := "s"
	if len(rows) == 1 {
		s = ""
	}
	_, err := fmt.Fprintf(w, "(%d row%s)\n", len(rows), s)
	return err
}

func printCSV(w io.Writer, names []string, rows [][]any) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(names); err != nil {
		return err
	}
	line := make([]string, len(names))
	for _, r := range rows {
		for i, v := range r {
			line[i] = text(v, "")
		}
		if err := cw.Write(line); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// printJSON writes a JSON array of one object per row, its keys in column
// order.
func printJSON(w io.Writer, names []string, rows [][]any) error {
	var b strings.Builder
	b.WriteString("[")
	for ri, r := range rows {
		if ri > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  {")
		for i, v := range r {
			if i > 0 {
				b.WriteString(", ")
			}
			k, _ := json.Marshal(names[i])
			val, err := json.Marshal(jsonable(v))
			if err != nil {
				return err
			}
			b.Write(k)
			b.WriteString(": ")
			b.Write(val)
		}
		b.WriteString("}")
	}
	if len(rows) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("]\n")
	_, err := io.WriteString(w, b.String())
	return err
}
