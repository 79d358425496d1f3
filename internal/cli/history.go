package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/haul-dev/haul/internal/blob"
	_ "github.com/haul-dev/haul/internal/blob/s3" // s3:// URLs for --to and --from
	"github.com/haul-dev/haul/internal/history"
	"github.com/haul-dev/haul/internal/server"
	"github.com/haul-dev/haul/internal/store"
	"github.com/haul-dev/haul/internal/store/sqlite"
)

// QueryBinEnv names the haul-query binary `haul query` runs, instead of
// looking for it next to haul and then in PATH.
const QueryBinEnv = "HAUL_QUERY_BIN"

// HistoryEnv is the default of `haul query --from`.
const HistoryEnv = "HAUL_HISTORY"

func (a *app) historyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "history",
		Short: "The history export: finished jobs as Parquet files in an object store",
		Long: `Finished jobs, their tasks, attempts, workers and log index, exported to
Parquet files (Hive-partitioned by the day each job finished) for analytics
that outlive the live store. Query them with 'haul query'. See
docs/history.md for the layout and every table's columns.`,
	}
	cmd.AddCommand(a.historyExportCmd())
	return cmd
}

func (a *app) historyExportCmd() *cobra.Command {
	var db, to string
	var batchJobs int
	var finishedBefore time.Duration
	cmd := &cobra.Command{
		Use:   "export --db URL|PATH --to BLOBURL",
		Short: "Export the finished jobs that no earlier export wrote",
		Long: `Opens the store directly (an operator command: no server is involved) and
writes every finished job that no earlier run exported to the object store
--to, in batches of --batch-jobs jobs, until none is left. Jobs that
finished less than --finished-before ago wait for a later run, so that
their workers' records and logs are complete.

Runs are incremental and idempotent: a batch is written to files named
after it, and a batch a crashed run left unfinished is written again,
whole, to the same files, before any new one. Run it as often as you like.

--db is a postgres:// URL, the path of a SQLite database file, or a data
folder holding haul.db (default: haul up's, $HAUL_DATA).`,
		Example: "  haul history export --db postgres://haul@db/haul --to s3://analytics/haul-history\n" +
			"  haul history export --db /var/lib/haul/haul.db --to file:///srv/haul-history --finished-before 10m",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return usageError{errors.New("--to: want the object store to write, such as s3://bucket/prefix or file:///abs/path")}
			}
			if batchJobs <= 0 {
				return usageError{fmt.Errorf("--batch-jobs %d: want a positive number", batchJobs)}
			}
			if finishedBefore < 0 {
				return usageError{fmt.Errorf("--finished-before %s: want a duration of 0 or more", finishedBefore)}
			}
			ctx := cmd.Context()
			s, err := openHistoryStore(ctx, a, db)
			if err != nil {
				return err
			}
			defer s.Close()
			b, err := blob.Open(to)
			if err != nil {
				return usageError{fmt.Errorf("--to: %w", err)}
			}
			e := &history.Exporter{Store: s, Blob: b, BatchJobs: batchJobs, MinAge: finishedBefore, Teams: history.TeamStores(s)}
			st, err := e.Run(ctx)
			if a.output == "json" {
				if perr := a.printJSON(st); perr != nil && err == nil {
					err = perr
				}
			} else {
				a.printExportStats(st)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&db, "db", "", "the store: a postgres:// URL, a SQLite database file, or a data folder (default: $HAUL_DATA's haul.db)")
	cmd.Flags().StringVar(&to, "to", "", "the object store to write: s3://bucket/prefix, file:///abs/path or /abs/path")
	cmd.Flags().IntVar(&batchJobs, "batch-jobs", history.DefaultBatchJobs, "jobs per batch")
	cmd.Flags().DurationVar(&finishedBefore, "finished-before", time.Hour, "export only jobs that finished at least this long ago")
	return cmd
}

// openHistoryStore opens the store --db names, as haul up would for a URL
// or a data folder, or the SQLite file it names.
func openHistoryStore(ctx context.Context, a *app, db string) (store.Store, error) {
	log := a.logger()
	switch {
	case db == "":
		return server.OpenStore(ctx, "", server.DefaultDataDir(), log)
	case strings.Contains(db, "://"):
		return server.OpenStore(ctx, db, "", log)
	}
	if fi, err := os.Stat(db); err == nil && fi.IsDir() {
		return server.OpenStore(ctx, "", db, log)
	} else if err != nil {
		return nil, usageError{fmt.Errorf("--db %s: %w", db, err)}
	}
	return sqlite.Open(ctx, db, log)
}

func (a *app) printExportStats(st history.Stats) {
	if st.Batches == 0 {
		fmt.Fprintln(a.stdout, "nothing to export: every finished job is exported")
		return
	}
	fmt.Fprintf(a.stdout, "exported %d jobs in %d batches: %d files, %s\n", st.Jobs, st.Batches, st.Files, bytesIEC(st.Bytes))
	for _, t := range history.Tables {
		fmt.Fprintf(a.stdout, "  %-12s %d rows\n", t, st.Rows[t])
	}
}

// tableWords finds the history tables a query names.
var tableWords = regexp.MustCompile(`(?i)\b(` + strings.Join(history.Tables, "|") + `)\b`)

// QueriedTables returns the history tables that q names (as words, in any
// case), each once, in history.Tables order.
func QueriedTables(q string) []string {
	seen := map[string]bool{}
	for _, m := range tableWords.FindAllString(q, -1) {
		seen[strings.ToLower(m)] = true
	}
	var out []string
	for _, t := range history.Tables {
		if seen[t] {
			out = append(out, t)
		}
	}
	return out
}

func (a *app) queryCmd() *cobra.Command {
	var from, format string
	cmd := &cobra.Command{
		Use:   `query [--from BLOBURL|DIR] [--format table|csv|json] "SQL"`,
		Short: "SQL over the history export (DuckDB)",
		Long: `Runs SQL over the history export (see 'haul history export') with DuckDB.
The tables are jobs, tasks, attempts, workers and log_entries, each with
the partition column date (the UTC day the job finished).

--from (default $HAUL_HISTORY) is where the export is: a local folder,
queried in place, or an object store URL (s3://bucket/prefix,
file:///abs/path), whose objects of the tables the SQL names are first
copied to a local cache ($XDG_CACHE_HOME/haul/history, default
~/.cache/haul/history), skipping those already there.

The query runs in the separate haul-query binary (DuckDB needs cgo, which
haul does without): $HAUL_QUERY_BIN, else haul-query next to haul, else in
PATH. Build it with: go build -o bin/haul-query ./cmd/haul-query`,
		Example: `  haul query --from s3://analytics/haul-history "SELECT team, sum(cost_usd) FROM jobs GROUP BY team"` + "\n" +
			`  haul query --from /srv/haul-history --format csv "SELECT * FROM attempts WHERE oom AND date = DATE '2026-11-02'"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "table", "csv", "json":
			default:
				return usageError{fmt.Errorf("--format %q: want table, csv or json", format)}
			}
			if from == "" {
				return usageError{fmt.Errorf("--from: want the export's location (an object store URL or a folder), or set %s", HistoryEnv)}
			}
			bin, err := findQueryBin()
			if err != nil {
				return err
			}
			dir := from
			if strings.Contains(from, "://") {
				b, err := blob.Open(from)
				if err != nil {
					return usageError{fmt.Errorf("--from: %w", err)}
				}
				if dir, err = historyCache(from); err != nil {
					return err
				}
				fs, err := FetchTables(cmd.Context(), b, dir, QueriedTables(args[0]))
				if err != nil {
					return err
				}
				if fs.Fetched > 0 {
					fmt.Fprintf(a.stderr, "haul: fetched %d objects (%s) into %s; %d were cached\n", fs.Fetched, bytesIEC(fs.Bytes), dir, fs.Cached)
				}
			}
			c := exec.CommandContext(cmd.Context(), bin, "--dir", dir, "--format", format, args[0])
			c.Stdin, c.Stdout, c.Stderr = a.stdin, a.stdout, a.stderr
			if err := c.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) && ee.ExitCode() > 0 {
					return exitError{ee.ExitCode()}
				}
				return fmt.Errorf("run %s: %w", bin, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", os.Getenv(HistoryEnv), "the export: an object store URL or a local folder (env "+HistoryEnv+")")
	cmd.Flags().StringVar(&format, "format", "table", "output: table, csv or json")
	return cmd
}

// findQueryBin finds the haul-query binary: $HAUL_QUERY_BIN, else next to
// this executable, else in PATH.
func findQueryBin() (string, error) {
	if p := os.Getenv(QueryBinEnv); p != "" {
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "haul-query")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath("haul-query"); err == nil {
		return p, nil
	}
	return "", errors.New("haul query needs the haul-query binary (DuckDB, built with cgo), and found it neither in " + QueryBinEnv +
		", nor next to haul, nor in PATH: build it with `go build -o bin/haul-query ./cmd/haul-query` and put it next to haul")
}

// historyCache is the local folder that caches the export at url:
// $XDG_CACHE_HOME/haul/history/<sha256 of url> (default ~/.cache/...).
func historyCache(url string) (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("history cache: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(base, "haul", "history", hex.EncodeToString(sum[:])), nil
}

// FetchStats is what FetchTables copied.
type FetchStats struct {
	Fetched, Cached int
	Bytes           int64
}

// sizer is a blob store that tells an object's size without reading it.
type sizer interface {
	Size(ctx context.Context, key string) (int64, error)
}

// FetchTables copies the objects under each table's folder of b into dir
// (same keys, as paths), skipping those dir already holds at the same
// size. A store that cannot tell sizes without a read (neither a sizer nor
// the filesystem store) has its cached objects kept as they are: the
// export writes a key only with the same rows.
func FetchTables(ctx context.Context, b blob.Store, dir string, tables []string) (FetchStats, error) {
	var st FetchStats
	for _, t := range tables {
		keys, err := b.List(ctx, t+"/")
		if err != nil {
			return st, fmt.Errorf("list %s: %w", t, err)
		}
		for _, k := range keys {
			if !strings.HasSuffix(k, ".parquet") {
				continue
			}
			local := filepath.Join(dir, filepath.FromSlash(k))
			if fi, err := os.Stat(local); err == nil {
				if size, ok, err := remoteSize(ctx, b, k); err != nil {
					return st, err
				} else if !ok || size == fi.Size() {
					st.Cached++
					continue
				}
			}
			n, err := fetchObject(ctx, b, k, local)
			if err != nil {
				return st, err
			}
			st.Fetched++
			st.Bytes += n
		}
	}
	return st, nil
}

// remoteSize returns an object's size when the store can tell it cheaply.
func remoteSize(ctx context.Context, b blob.Store, key string) (int64, bool, error) {
	switch s := b.(type) {
	case sizer:
		n, err := s.Size(ctx, key)
		return n, err == nil, err
	case *blob.FS:
		fi, err := os.Stat(filepath.Join(s.Root(), filepath.FromSlash(key)))
		if err != nil {
			return 0, false, fmt.Errorf("size of %s: %w", key, err)
		}
		return fi.Size(), true, nil
	}
	return 0, false, nil
}

// fetchObject copies one object to path, through a temporary file renamed
// into place, so that the cache never holds part of an object.
func fetchObject(ctx context.Context, b blob.Store, key, path string) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	r, err := b.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	defer r.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fetch-*")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	return n, nil
}
