package catalog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// RepairFormat puts back in the catalog's own format what an older Cellar
// wrote in the other one, so that the Barman that owns the catalog reads
// it again. Only a Barman 3.4 catalog can need it: backup.info files and
// annotations found in meta/ move to base/<id>/ (backup.info keeping only
// the keys 3.4 knows), five-field xlog.db lines get four fields, and an
// emptied meta/ is removed. Each file is written whole before its old
// copy goes, so an interruption leaves a readable catalog; running it
// again finishes the job. It returns what it changed.
func RepairFormat(ctx context.Context, l Layout) ([]string, error) {
	f, err := l.Format()
	if err != nil || f != FormatBarman34 {
		return nil, err
	}
	entries, err := os.ReadDir(l.MetaDir)
	if errors.Is(err, fs.ErrNotExist) {
		return repairXLogDB(ctx, l, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("server %s: repair: %w", l.Server, err)
	}
	var changed []string
	c := Open(l)
	for _, e := range entries {
		moved, err := c.moveFromMeta(e.Name())
		if err != nil {
			return changed, err
		}
		if moved {
			changed = append(changed, filepath.Join(l.MetaDir, e.Name()))
		}
	}
	if err := os.Remove(l.MetaDir); err == nil {
		changed = append(changed, l.MetaDir)
	}
	return repairXLogDB(ctx, l, changed)
}

// moveFromMeta moves one meta/ file of a legacy catalog to its legacy
// place; files it does not know are left alone.
func (c *Catalog) moveFromMeta(name string) (bool, error) {
	if id, ok := strings.CutSuffix(name, "-backup.info"); ok && IsBackupID(id) {
		b, err := c.Get(id)
		if err != nil {
			return false, err
		}
		return true, c.Save(b)
	}
	id, key, ok := strings.Cut(name, "-")
	if !ok || !IsBackupID(id) || (key != AnnotationKeep && key != AnnotationDeleteThis) {
		return false, nil
	}
	v, _, err := c.Annotation(id, key)
	if err != nil {
		return false, err
	}
	return true, c.SetAnnotation(id, key, v)
}

func repairXLogDB(ctx context.Context, l Layout, changed []string) ([]string, error) {
	x := OpenXLogDB(l)
	before, err := os.ReadFile(x.Path())
	if errors.Is(err, fs.ErrNotExist) {
		return changed, nil
	}
	if err != nil {
		return changed, fmt.Errorf("server %s: repair: %w", l.Server, err)
	}
	if _, err := x.Rewrite(ctx, func(WALInfo) bool { return true }); err != nil {
		return changed, err
	}
	after, err := os.ReadFile(x.Path())
	if err != nil {
		return changed, fmt.Errorf("server %s: repair: %w", l.Server, err)
	}
	if string(after) != string(before) {
		changed = append(changed, x.Path())
	}
	return changed, nil
}
