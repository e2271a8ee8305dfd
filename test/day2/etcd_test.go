package day2_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dodai-dev/dodai/internal/etcd"
)

func TestEtcdCommands(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	tc := newCluster(t, 3, 1)
	cms := tc.Kube.Client.CoreV1().ConfigMaps("default")
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-snapshot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// status: a table and a quorum line; JSON with every member.
	code, out, errOut := tc.dodai(ctx, "etcd", "status")
	if code != 0 {
		t.Fatalf("etcd status: exit %d\n%s%s", code, out, errOut)
	}
	show(t, "etcd status", out, errOut)
	for _, want := range []string{"MEMBER", "LEADER", "DB SIZE", "RAFT INDEX", "healthy quorum: 3 of 3 members healthy, 2 needed; leader cp1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^[0-9a-f]{16}\s+cp1\s+\S+\s+\*\s+yes\s+\d`).MatchString(out) {
		t.Fatalf("leader row:\n%s", out)
	}
	code, out, _ = tc.dodai(ctx, "etcd", "status", "-o", "json")
	var st etcd.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Members) != 3 || !st.HasQuorum {
		t.Fatalf("status json: %d %s", code, out)
	}

	// snapshot: rotated under state/etcd, 0600, verified.
	for range 3 {
		code, out, errOut = tc.dodai(ctx, "etcd", "snapshot", "--keep", "2")
		if code != 0 || !strings.Contains(out, "verified: revision ") {
			t.Fatalf("snapshot: exit %d\n%s%s", code, out, errOut)
		}
		show(t, "etcd snapshot --keep 2", out, errOut)
		time.Sleep(5 * time.Millisecond) // distinct file names
	}
	snaps, _ := filepath.Glob(filepath.Join(tc.Dir, "state", "etcd", "snapshot-*.db"))
	if len(snaps) != 2 {
		t.Fatalf("rotated snapshots: %v", snaps)
	}
	out_ := filepath.Join(t.TempDir(), "backup.db")
	code, out, errOut = tc.dodai(ctx, "etcd", "snapshot", "--out", out_, "-o", "json")
	var info etcd.SnapshotInfo
	if code != 0 || json.Unmarshal([]byte(out), &info) != nil || info.Path != out_ || info.Revision == 0 {
		t.Fatalf("snapshot --out: exit %d\n%s%s", code, out, errOut)
	}
	if fi, err := os.Stat(out_); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v %v", fi, err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-snapshot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// restore while quorum is healthy: refused, exit 1, nothing touched.
	code, out, errOut = tc.dodai(ctx, "etcd", "restore", out_, "--poll-interval", "20ms")
	if code != 1 || !strings.Contains(errOut, "etcd still has a healthy quorum") || !strings.Contains(errOut, "--force") {
		t.Fatalf("restore with quorum: exit %d\n%s", code, errOut)
	}
	show(t, "etcd restore backup.db", out, errOut)
	for name, n := range tc.Nodes {
		if n.Count("Reset") != 0 {
			t.Fatalf("%s was reset", name)
		}
	}

	// Quorum lost: the restore brings the snapshot's objects back.
	tc.Group.SetEtcdDown(tc.Nodes["cp1"], true)
	tc.Group.SetEtcdDown(tc.Nodes["cp3"], true)
	code, out, errOut = tc.dodai(ctx, "etcd", "status")
	if code != 1 {
		t.Fatalf("status without quorum: exit %d", code)
	}
	show(t, "etcd status", out, errOut)
	code, out, errOut = tc.dodai(ctx, "etcd", "restore", out_, "--poll-interval", "20ms")
	if code != 0 {
		t.Fatalf("restore: exit %d\n%s%s", code, out, errOut)
	}
	show(t, "etcd restore backup.db", out, errOut)
	for _, want := range []string{"step 1/7", "step 4/7", "step 7/7", "the Kubernetes API answers"} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("restore log lacks %q:\n%s", want, errOut)
		}
	}
	if !strings.Contains(out, "etcd restored on cp1") || !strings.Contains(out, "healthy quorum: 3 of 3") {
		t.Fatalf("restore output:\n%s", out)
	}
	if _, err := cms.Get(ctx, "before-snapshot", metav1.GetOptions{}); err != nil {
		t.Fatalf("object from before the snapshot: %v", err)
	}
	if _, err := cms.Get(ctx, "after-snapshot", metav1.GetOptions{}); err == nil {
		t.Fatal("object created after the snapshot survived")
	}
	if n := tc.Nodes["w1"].Count("Reset"); n != 0 {
		t.Fatal("the worker was reset")
	}
}
