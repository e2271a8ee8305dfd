package charts_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
	"github.com/dodai-dev/dodai/charts"
	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/incluster/crds"
	"github.com/dodai-dev/dodai/internal/incluster/kube"
	"github.com/dodai-dev/dodai/internal/incluster/netbootstore"
	"github.com/dodai-dev/dodai/internal/incluster/replicas"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/testutil"
	"github.com/dodai-dev/dodai/test/kubetest"
)

// The chart's netboot Role is enough for `dodai netboot --in-cluster`:
// against a real apiserver with RBAC, a boot server store running as the
// chart's netboot service account (impersonated) syncs its watches of
// Machines, DHCPLeases and the heartbeat Leases, keeps its heartbeat and
// sees it among the running replicas, writes a Machine and binds a
// DHCPLease, and deletes its heartbeat when it stops.
func TestDodaiNetbootRoleRunsTheStore(t *testing.T) {
	testutil.Slow(t, "needs the test Kubernetes")
	env := kubetest.StartT(t, kubetest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	admin, err := kube.Client(env.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := crds.Install(ctx, admin); err != nil {
		t.Fatal(err)
	}
	const ns = "dodai-system"
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	var applied []string
	for _, o := range charts.RenderDodai(t, charts.LoadDodai(t), ns, map[string]any{"netboot": map[string]any{"enabled": true}}) {
		if o.GetName() == "dodai-netboot" && slices.Contains([]string{"ServiceAccount", "Role", "RoleBinding"}, o.GetKind()) {
			charts.Apply(ctx, t, env, o, false)
			applied = append(applied, o.GetKind())
		}
	}
	if len(applied) != 3 {
		t.Fatalf("the chart's netboot RBAC: %v, want its ServiceAccount, Role and RoleBinding", applied)
	}

	sa := env.RESTConfig()
	sa.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":dodai-netboot"}
	runCtx, stop := context.WithCancel(ctx)
	st, err := netbootstore.Open(runCtx, netbootstore.Options{REST: sa, Namespace: ns, Server: "a", Cluster: &cluster.Cluster{}})
	if err != nil {
		t.Fatalf("opening the store as the chart's service account: %v", err)
	}
	st.Announce("10.99.0.1", "http://10.99.0.1:8080", "dhcp")
	done := make(chan struct{})
	go func() { st.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()

	testutil.WaitUntil(t, "the store to see its own heartbeat running", func() bool {
		reps, err := st.Replicas(ctx)
		return err == nil && len(reps) == 1 && reps[0].Name == "a" && reps[0].Running
	})
	mac := "52:54:00:00:05:01"
	if !st.Owns(mac) {
		t.Errorf("the only running replica does not own %s", mac)
	}
	st.MachineChanged(state.Machine{MAC: mac, IP: "10.99.0.100", Arch: "amd64", Stage: "dhcp", LastSeen: time.Now().UTC()})
	testutil.WaitUntil(t, "the Machine written as the service account", func() bool {
		var m v1alpha1.Machine
		err := admin.Get(ctx, client.ObjectKey{Namespace: ns, Name: v1alpha1.MachineName(mac)}, &m)
		return err == nil && m.Status.BootServer == "a" && m.Status.IP == "10.99.0.100"
	})
	l, err := st.Leases(ctx, netip.MustParseAddr("10.99.0.100"), netip.MustParseAddr("10.99.0.110"), nil)
	if err != nil {
		t.Fatal(err)
	}
	hw := macaddr.MAC{0x52, 0x54, 0, 0, 5, 1}
	ip, ok := l.Offer(hw, netip.Addr{})
	if !ok {
		t.Fatal("no address offered")
	}
	d, err := l.Bind(hw, ip, time.Hour)
	if err == nil {
		err = d.Wait()
	}
	if err != nil {
		t.Fatalf("binding %s as the service account: %v", ip, err)
	}

	stop()
	<-done
	var hb coordinationv1.LeaseList
	if err := admin.List(ctx, &hb, client.InNamespace(ns), client.MatchingLabels{replicas.LabelComponent: replicas.Component}); err != nil || len(hb.Items) != 0 {
		t.Errorf("heartbeats after the store stopped: %d, %v", len(hb.Items), err)
	}
}
