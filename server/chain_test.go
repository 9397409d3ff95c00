package server

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cellar-backup/cellar/catalog"
	"github.com/cellar-backup/cellar/retention"
)

// chainCatalog is fakeCatalog with n backups where backup 1 is an
// incremental of 0 and backup 2 of 1 (children recorded both ways, as a
// DONE chain is); the others are full.
func chainCatalog(t *testing.T, policy string, n int) (*Server, []string) {
	t.Helper()
	s := fakeCatalog(t, policy, n)
	all, err := s.Catalog().Backups()
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(all))
	for i, b := range all {
		ids[i] = b.ID
	}
	for i := 1; i <= 2; i++ {
		all[i].ParentBackupID = ids[i-1]
		all[i-1].ChildrenBackupIDs = []string{ids[i]}
	}
	for _, b := range all[:3] {
		if err := s.Catalog().Save(b); err != nil {
			t.Fatal(err)
		}
	}
	return s, ids
}

func remaining(t *testing.T, s *Server) []string {
	t.Helper()
	all, err := s.Catalog().Backups()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, b := range all {
		ids = append(ids, b.ID)
	}
	return ids
}

func TestDeleteParentRefusedNamingChildren(t *testing.T) {
	s, ids := chainCatalog(t, "REDUNDANCY 1", 4)
	err := s.DeleteBackup(t.Context(), ids[0], nil)
	if !errors.Is(err, retention.ErrHasChildren) || !strings.Contains(err.Error(), ids[2]+", "+ids[1]) || !strings.Contains(err.Error(), "--with-children") {
		t.Fatalf("delete of a parent: %v", err)
	}
	if got := remaining(t, s); len(got) != 4 {
		t.Fatalf("a refused delete removed backups: %v", got)
	}
	if err := s.Keep(ids[1], catalog.KeepFull); err == nil || !strings.Contains(err.Error(), "incremental") {
		t.Fatalf("keep of an incremental: %v", err)
	}
	// Deleting the newest incremental updates its parent's children.
	if err := s.DeleteBackup(t.Context(), ids[2], nil); err != nil {
		t.Fatal(err)
	}
	p, err := s.GetBackup(ids[1])
	if err != nil || len(p.ChildrenBackupIDs) != 0 {
		t.Fatalf("parent after its child's delete: children %v, %v", p.ChildrenBackupIDs, err)
	}
	var out strings.Builder
	if err := s.DeleteBackupTree(t.Context(), ids[0], true, &out); err != nil {
		t.Fatal(err)
	}
	if got := remaining(t, s); !slices.Equal(got, ids[3:]) {
		t.Fatalf("after delete --with-children: %v", got)
	}
	if i, j := strings.Index(out.String(), "Deleting backup "+ids[1]), strings.Index(out.String(), "Deleting backup "+ids[0]); i < 0 || j < i {
		t.Fatalf("child not deleted before its parent:\n%s", out.String())
	}
}

func TestRetentionDeletesObsoleteChainChildrenFirst(t *testing.T) {
	s, ids := chainCatalog(t, "REDUNDANCY 1", 4)
	var out strings.Builder
	deleted, _, err := s.EnforceRetention(t.Context(), false, &out)
	if err != nil || !slices.Equal(deleted, []string{ids[2], ids[1], ids[0]}) {
		t.Fatalf("retention deleted %v (%v), want the chain %v deepest first", deleted, err, ids[:3])
	}
	if got := remaining(t, s); !slices.Equal(got, ids[3:]) {
		t.Fatalf("after retention: %v", got)
	}
}

func TestRetentionKeepsChainOfValidIncremental(t *testing.T) {
	// Backups 0..2 are the chain, 3 is full: REDUNDANCY 2 keeps the chain's
	// root and with it every incremental.
	s, ids := chainCatalog(t, "REDUNDANCY 2", 4)
	deleted, _, err := s.EnforceRetention(t.Context(), false, nil)
	if err != nil || len(deleted) != 0 {
		t.Fatalf("retention deleted %v (%v)", deleted, err)
	}
	if got := remaining(t, s); !slices.Equal(got, ids) {
		t.Fatalf("after retention: %v", got)
	}
}

func TestCheckBackupsRepairsChildren(t *testing.T) {
	s, ids := chainCatalog(t, "REDUNDANCY 2", 4)
	// A crash after the child became DONE, before its parent listed it;
	// and a listed child whose delete finished but not the parent's update.
	p, _ := s.GetBackup(ids[0])
	p.ChildrenBackupIDs = nil
	s.Catalog().Save(p)
	last, _ := s.GetBackup(ids[3])
	last.ChildrenBackupIDs = []string{"20991231T000000"}
	s.Catalog().Save(last)
	// A FAILED incremental is never a child, even if listed.
	failed, _ := s.GetBackup(ids[2])
	failed.Status = catalog.StatusFailed
	s.Catalog().Save(failed)
	if _, err := s.CheckBackups(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want []string
	}{{ids[0], []string{ids[1]}}, {ids[1], nil}, {ids[3], nil}} {
		b, _ := s.GetBackup(tc.id)
		if !slices.Equal(b.ChildrenBackupIDs, tc.want) {
			t.Errorf("backup %s children %v, want %v", tc.id, b.ChildrenBackupIDs, tc.want)
		}
	}
}
