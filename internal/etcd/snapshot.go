package etcd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// SnapshotInfo describes a checked snapshot file.
type SnapshotInfo struct {
	Path string `json:"path"`
	// Node the snapshot was streamed from.
	Node string `json:"node,omitempty"`
	// Size of the file in bytes.
	Size int64 `json:"size"`
	// SHA256 is etcd's integrity trailer (the sha256 of the database part),
	// verified against the content.
	SHA256 string `json:"sha256"`
	// Hash is etcd's content hash of the database (`etcdutl snapshot status`).
	Hash uint32 `json:"hash"`
	// Revision is the newest revision in the snapshot.
	Revision  int64  `json:"revision"`
	TotalKeys int    `json:"totalKeys"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"storageVersion,omitempty"`
	// Time the snapshot was written (file modification time).
	Time time.Time `json:"time"`
}

// ErrBadSnapshot is returned (wrapped) for a file that is not a complete,
// intact etcd snapshot.
var ErrBadSnapshot = errors.New("not a valid etcd snapshot")

// Check verifies a snapshot file as etcd's restore would: the sha256
// trailer etcd appends to a snapshot must match the database before it (a
// truncated or corrupted stream fails here), and the database must open,
// pass bbolt's consistency check and hold a revision. It returns etcd's
// own status of the file (hash, revision, keys).
func Check(path string) (*SnapshotInfo, error) {
	info, err := check(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

func check(path string) (*SnapshotInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	info := &SnapshotInfo{Path: path, Size: fi.Size(), Time: fi.ModTime()}
	// etcd's snapshot stream ends with the sha256 of everything before it;
	// bbolt files are whole pages, so size % 512 == 32 (etcd's own test).
	if fi.Size()%512 != sha256.Size {
		return nil, fmt.Errorf("%w: size %d has no sha256 trailer (truncated, or not a snapshot)", ErrBadSnapshot, fi.Size())
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, fi.Size()-sha256.Size); err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return nil, fmt.Errorf("%w: sha256 %x does not match its trailer %x (corrupted)", ErrBadSnapshot, got, want)
	}
	info.SHA256 = hex.EncodeToString(want)
	st, err := dbStatus(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if st.Revision <= 0 {
		return nil, fmt.Errorf("%w: it holds no revision", ErrBadSnapshot)
	}
	info.Hash, info.Revision, info.TotalKeys, info.TotalSize, info.Version = st.Hash, st.Revision, st.TotalKey, st.TotalSize, st.Version
	return info, nil
}

// dbStatus is etcdutl's `snapshot status`; a panic in the database library
// on a damaged file becomes an error.
func dbStatus(path string) (st snapshot.Status, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading the database: %v", r)
		}
	}()
	return snapshot.NewV3(zap.NewNop()).Status(path)
}

// Save writes the stream to path atomically: into a temporary file (0600)
// beside it, synced and checked (Check), then renamed. A stream that fails,
// is truncated or corrupted leaves no file behind, and an existing file at
// path is only replaced by a good snapshot.
func Save(r io.Reader, path string) (*SnapshotInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-*")
	if err != nil {
		return nil, fmt.Errorf("creating snapshot file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, err
	}
	if _, err := io.Copy(tmp, r); err != nil {
		return nil, fmt.Errorf("receiving the snapshot: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("writing snapshot: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("writing snapshot: %w", err)
	}
	info, err := check(tmp.Name())
	if err != nil {
		return nil, fmt.Errorf("the received snapshot is bad, nothing written: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("writing snapshot: %w", err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	info.Path = path
	return info, nil
}

const snapshotPrefix, snapshotExt = "snapshot-", ".db"

// SnapshotName is a rotated snapshot's file name for a time (UTC,
// sortable).
func SnapshotName(t time.Time) string {
	return snapshotPrefix + t.UTC().Format("20060102T150405.000Z") + snapshotExt
}

// Snapshots lists the rotated snapshots in dir, oldest first.
func Snapshots(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, snapshotPrefix) && strings.HasSuffix(n, snapshotExt) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Rotate deletes the oldest rotated snapshots in dir beyond keep (keep <= 0
// keeps all) and returns the deleted paths.
func Rotate(dir string, keep int) ([]string, error) {
	if keep <= 0 {
		return nil, nil
	}
	all, err := Snapshots(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for len(all) > keep {
		if err := os.Remove(all[0]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, all[0])
		all = all[1:]
	}
	return removed, nil
}

// SnapshotRotated takes a snapshot into dir (the cluster directory's
// cluster.Layout.EtcdSnapshots, where `dodai etcd snapshot` and `dodai
// apply` keep them) under SnapshotName, then keeps the newest keep there
// (Rotate). It returns the snapshot and the files rotation deleted.
func (c *Client) SnapshotRotated(ctx context.Context, st *Status, dir string, keep int) (*SnapshotInfo, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	info, err := c.Snapshot(ctx, st, filepath.Join(dir, SnapshotName(time.Now())))
	if err != nil {
		return nil, nil, err
	}
	removed, err := Rotate(dir, keep)
	if err != nil {
		return info, removed, fmt.Errorf("rotating snapshots in %s: %w", dir, err)
	}
	return info, removed, nil
}

// Snapshot streams a snapshot from a healthy member into path (Save). It
// prefers followers over the leader and tries the next healthy member when
// one fails; st may be nil (Status is asked then).
func (c *Client) Snapshot(ctx context.Context, st *Status, path string) (*SnapshotInfo, error) {
	if st == nil {
		var err error
		if st, err = c.Status(ctx); err != nil {
			return nil, err
		}
	}
	var cands []Member
	for _, m := range st.Members {
		if m.Healthy && m.Node != "" {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return nil, fmt.Errorf("no healthy etcd member to take a snapshot from (%d members, %d healthy)", len(st.Members), st.HealthyMembers)
	}
	slices.SortStableFunc(cands, func(a, b Member) int { return boolInt(a.Leader) - boolInt(b.Leader) })
	var errs []error
	for _, m := range cands {
		n, _ := c.Node(m.Node)
		info, err := c.snapshotFrom(ctx, n, path)
		if err == nil {
			info.Node = n.Name
			return info, nil
		}
		errs = append(errs, fmt.Errorf("from %s: %w", n.Name, err))
	}
	return nil, errors.Join(errs...)
}

func (c *Client) snapshotFrom(ctx context.Context, n Node, path string) (*SnapshotInfo, error) {
	cc, err := c.talos(ctx, n)
	if err != nil {
		return nil, err
	}
	// The stream may take long for a big database: bound it by the
	// caller's context only.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rd, err := cc.EtcdSnapshot(ctx, &machineapi.EtcdSnapshotRequest{})
	if err != nil {
		return nil, fmt.Errorf("starting the snapshot: %s", ShortErr(err))
	}
	defer rd.Close()
	return Save(rd, path)
}

// recoverOn uploads a snapshot to a node (EtcdRecover) for a recover-from
// bootstrap.
func recoverOn(ctx context.Context, cc *client.Client, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = cc.EtcdRecover(ctx, f)
	return err
}
