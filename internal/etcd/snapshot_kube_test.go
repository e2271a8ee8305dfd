package etcd_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/test/faketalos"
	"github.com/dodai-dev/dodai/test/kubetest"
)

func etcdRevision(t *testing.T, ctx context.Context, endpoint string) int64 {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Get(ctx, "/registry/namespaces/default")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func TestSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real etcd and kube-apiserver")
	}
	ctx := testCtx(t, 3*time.Minute)
	env := kubetest.StartT(t, kubetest.Options{})
	cl, c := startCluster(t, 3, 0, env)
	if _, err := env.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "out", "snap.db")
	rev := etcdRevision(t, ctx, env.EtcdURL)
	info, err := c.Snapshot(ctx, nil, path)
	if err != nil {
		t.Fatal(err)
	}
	// From a follower, with the real etcd's revision, written 0600.
	if info.Node != "cp2" || info.Revision != rev || info.TotalKeys == 0 || info.Size%512 != 32 || len(info.SHA256) != 64 {
		t.Fatalf("info %+v (etcd revision %d)", info, rev)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != info.Size {
		t.Fatalf("file: %v %v", fi, err)
	}
	// etcd's own restore accepts it (hash checked).
	if err := snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{SnapshotPath: path, Name: "x", OutputDataDir: filepath.Join(dir, "restored"),
		PeerURLs: []string{"http://127.0.0.1:2380"}, InitialCluster: "x=http://127.0.0.1:2380"}); err != nil {
		t.Fatalf("etcdutl restore: %v", err)
	}
	if again, err := etcd.Check(path); err != nil || again.Hash != info.Hash || again.Revision != info.Revision {
		t.Fatalf("check: %+v %v", again, err)
	}
	if n := cl.Node("cp2").Count("EtcdSnapshot"); n != 1 {
		t.Fatalf("snapshots from cp2: %d", n)
	}

	// A corrupted, a truncated and a broken stream: errors, and nothing
	// left behind (an existing file stays as it was).
	old, _ := os.ReadFile(path)
	for _, f := range []faketalos.EtcdFaults{
		{SnapshotCorrupt: true},
		{SnapshotTruncate: int(info.Size) / 2},
		{SnapshotTruncate: int(info.Size) - 1},
		{SnapshotError: "disk read error"},
	} {
		for _, n := range []string{"cp1", "cp2", "cp3"} {
			cl.Group.SetEtcdFaults(cl.Node(n), f)
		}
		for _, target := range []string{path, filepath.Join(dir, "new.db")} {
			_, err := c.Snapshot(ctx, nil, target)
			if err == nil {
				t.Fatalf("%+v: no error", f)
			}
			want := "nothing written"
			if f.SnapshotError != "" {
				want = "disk read error"
			}
			if !strings.Contains(err.Error(), want) || strings.Count(err.Error(), "from cp") != 3 {
				t.Fatalf("%+v: %v", f, err)
			}
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Fatalf("%+v: left %v", f, entries)
		}
		if _, err := os.Stat(filepath.Join(dir, "new.db")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%+v: new.db written", f)
		}
		if b, _ := os.ReadFile(path); string(b) != string(old) {
			t.Fatalf("%+v: existing snapshot changed", f)
		}
	}
	// One bad member: the next healthy one serves.
	cl.Group.SetEtcdFaults(cl.Node("cp1"), faketalos.EtcdFaults{})
	info, err = c.Snapshot(ctx, nil, path)
	if err != nil || info.Node != "cp1" {
		t.Fatalf("fallback: %+v %v", info, err)
	}
}

func TestRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real etcd and kube-apiserver")
	}
	ctx := testCtx(t, 4*time.Minute)
	env := kubetest.StartT(t, kubetest.Options{})
	cl, c := startCluster(t, 3, 1, env)
	cms := env.Client.CoreV1().ConfigMaps("default")
	for _, n := range []string{"kept", "deleted-after"} {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n}, Data: map[string]string{"v": n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "snap.db")
	info, err := c.Snapshot(ctx, nil, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "deleted-after", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "created-after"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(t.TempDir(), "restore.json")
	opts := etcd.RestoreOptions{Snapshot: path, StateFile: stateFile, Poll: 10 * time.Millisecond}

	// Refused while quorum is healthy; nothing was touched.
	if _, err := c.Restore(ctx, opts); !errors.Is(err, etcd.ErrQuorumHealthy) {
		t.Fatalf("restore with quorum: %v", err)
	}
	for _, n := range cl.Nodes {
		if n.Count("Reset")+n.Count("EtcdRecover") != 0 {
			t.Fatalf("%s touched", n.Name())
		}
	}
	// A bad snapshot is refused first.
	bad := filepath.Join(t.TempDir(), "bad.db")
	b, _ := os.ReadFile(path)
	os.WriteFile(bad, b[:len(b)-1], 0o600)
	if _, err := c.Restore(ctx, etcd.RestoreOptions{Snapshot: bad, Force: true}); !errors.Is(err, etcd.ErrBadSnapshot) {
		t.Fatalf("bad snapshot: %v", err)
	}

	// Disaster: two of three members are lost.
	cl.Group.SetEtcdDown(cl.Node("cp2"), true)
	cl.Group.SetEtcdDown(cl.Node("cp3"), true)
	st, _ := c.Status(ctx)
	if st.HasQuorum {
		t.Fatal("quorum with two members down")
	}
	res, err := c.Restore(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.RecoveredOn != "cp1" || len(res.Reset) != 3 || res.Snapshot.Revision != info.Revision || !res.Status.HasQuorum || len(res.Status.Members) != 3 {
		t.Fatalf("result %+v", res)
	}
	for _, n := range []string{"cp1", "cp2", "cp3"} {
		calls := cl.Node(n).Calls()
		var reset string
		for _, call := range calls {
			if call.Method == "Reset" {
				reset = call.Detail
			}
		}
		if reset != "graceful=false reboot=true wipe=EPHEMERAL mode=ALL" {
			t.Fatalf("%s reset: %q", n, reset)
		}
	}
	var recoverCall string
	for _, call := range cl.Node("cp1").Calls() {
		if call.Method == "Bootstrap" && call.Code == 0 {
			recoverCall = call.Detail
		}
	}
	if recoverCall != "recover_etcd=true recover_skip_hash_check=false" {
		t.Fatalf("bootstrap: %q", recoverCall)
	}

	// The real apiserver serves the snapshot's data.
	if _, err := cms.Get(ctx, "deleted-after", metav1.GetOptions{}); err != nil {
		t.Fatalf("object deleted after the snapshot is not back: %v", err)
	}
	if cm, err := cms.Get(ctx, "kept", metav1.GetOptions{}); err != nil || cm.Data["v"] != "kept" {
		t.Fatalf("kept: %v %v", cm, err)
	}
	if _, err := cms.Get(ctx, "created-after", metav1.GetOptions{}); err == nil {
		t.Fatal("object created after the snapshot survived the restore")
	}
	// Done: a re-run does not restore again while quorum is healthy.
	if _, err := c.Restore(ctx, opts); !errors.Is(err, etcd.ErrQuorumHealthy) {
		t.Fatalf("second restore: %v", err)
	}
	if n := cl.Node("cp1").Count("EtcdRecover"); n != 1 {
		t.Fatalf("EtcdRecover calls: %d", n)
	}
}
