package drill

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cellar-backup/cellar/postgres"
)

// DefaultCheckTimeout bounds each user SQL check.
const DefaultCheckTimeout = time.Minute

// maxCheckFile bounds a check's SQL and expected files.
const maxCheckFile = 1 << 20

// userCheck is one NAME.sql with its NAME.expected.
type userCheck struct {
	name, query, expected string
}

// loadChecks reads the check directory: every NAME.sql needs a
// NAME.expected holding the result as psql -At prints it (columns joined
// by |, rows by newlines; surrounding blank space ignored).
func loadChecks(dir string) ([]userCheck, error) {
	if dir == "" {
		return nil, nil
	}
	sqls, err := filepath.Glob(filepath.Join(dir, "*.sql"))
	if err != nil {
		return nil, fmt.Errorf("check directory %s: %w", dir, err)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("check directory: %w", err)
	}
	sort.Strings(sqls)
	out := make([]userCheck, 0, len(sqls))
	for _, p := range sqls {
		c, err := loadCheck(p)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func loadCheck(sqlPath string) (userCheck, error) {
	name := strings.TrimSuffix(filepath.Base(sqlPath), ".sql")
	q, err := readSmall(sqlPath)
	if err != nil {
		return userCheck{}, err
	}
	expPath := strings.TrimSuffix(sqlPath, ".sql") + ".expected"
	exp, err := readSmall(expPath)
	if errors.Is(err, fs.ErrNotExist) {
		return userCheck{}, fmt.Errorf("check %s: %s is missing (it holds the expected result)", sqlPath, expPath)
	}
	if err != nil {
		return userCheck{}, err
	}
	if strings.TrimSpace(q) == "" {
		return userCheck{}, fmt.Errorf("check %s: empty query", sqlPath)
	}
	return userCheck{name: name, query: strings.TrimSpace(q), expected: strings.TrimSpace(exp)}, nil
}

func readSmall(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("check file: %w", err)
	}
	if fi.Size() > maxCheckFile {
		return "", fmt.Errorf("check file %s: larger than %d bytes", p, maxCheckFile)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("check file: %w", err)
	}
	return string(data), nil
}

// runCheck runs c read-only with a statement timeout and compares its
// result with the expected one.
func runCheck(ctx context.Context, conn *postgres.Conn, c userCheck, timeout time.Duration) Check {
	res := Check{Name: c.name, Query: c.query, Expected: c.expected}
	got, err := queryText(ctx, conn, c.query, timeout)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Got, res.OK = got, got == c.expected
	return res
}

// queryText runs sql in a read-only transaction and renders its rows as
// psql -At would.
func queryText(ctx context.Context, conn *postgres.Conn, sql string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	pc := conn.PgxConn().PgConn()
	setup := fmt.Sprintf("SET statement_timeout = %d; SET default_transaction_read_only = on", timeout.Milliseconds())
	if _, err := pc.Exec(ctx, setup).ReadAll(); err != nil {
		return "", fmt.Errorf("prepare read-only session: %w", err)
	}
	results, err := pc.Exec(ctx, "BEGIN READ ONLY; "+sql+"; ROLLBACK").ReadAll()
	if err != nil {
		_, _ = pc.Exec(ctx, "ROLLBACK").ReadAll()
		return "", err
	}
	// results: BEGIN, the query's statement(s), ROLLBACK; the answer is the
	// last statement before ROLLBACK.
	if len(results) < 3 {
		return "", fmt.Errorf("query returned no result")
	}
	rows := results[len(results)-2].Rows
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		cols := make([]string, len(r))
		for i, v := range r {
			cols[i] = string(v)
		}
		lines = append(lines, strings.Join(cols, "|"))
	}
	return strings.TrimSpace(strings.Join(lines, "\n")), nil
}
