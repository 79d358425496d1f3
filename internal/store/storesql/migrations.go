package storesql

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// Migration is one numbered schema migration: the file NNNN_name.sql of a
// driver's migrations/ directory.
type Migration struct {
	Version int
	Name    string // the file name without .sql
	SQL     string
}

// Migrations reads a driver's migrations/NNNN_name.sql files in order. The
// versions must count up from 1 without gaps.
func Migrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		if len(name) < 10 || name[4] != '_' || !strings.HasSuffix(name, ".sql") {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", name)
		}
		v, err := strconv.Atoi(name[:4])
		if err != nil {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", name)
		}
		if v != len(ms)+1 {
			return nil, fmt.Errorf("migration file %s: version %d, want %d (versions count up from 1 without gaps)", name, v, len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, "migrations/"+name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: strings.TrimSuffix(name, ".sql"), SQL: string(b)})
	}
	return ms, nil
}
