package kubetest

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dodai-dev/dodai/internal/testutil"
)

func createNamespace(ctx context.Context, t *testing.T, c kubernetes.Interface, name string) {
	t.Helper()
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
}

// TestAPIServer starts etcd and kube-apiserver, talks to them with both
// kubeconfig users, and checks that Stop ends the processes and removes Dir.
func TestAPIServer(t *testing.T) {
	testutil.Slow(t, "needs the kube tools")
	ctx := testutil.Context(t, 3*time.Minute)
	e, err := Start(ctx, Options{LogDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			t.Logf("logs:\n%s", e.LogTails(30))
			e.Stop()
		}
	}()
	t.Logf("started in %v (etcd %v, kube-apiserver %v)", e.Timings["total"], e.Timings[compEtcd], e.Timings[compAPIServer])

	if !strings.HasPrefix(e.APIServerURL, "https://127.0.0.1:") || !strings.HasPrefix(e.EtcdURL, "http://127.0.0.1:") {
		t.Errorf("URLs %s, %s are not on 127.0.0.1", e.APIServerURL, e.EtcdURL)
	}
	v, err := e.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.36.3" {
		t.Errorf("server version %q, want v1.36.3 (KUBE_LDFLAGS)", v.GitVersion)
	}
	ns := "kubetest-" + strings.ToLower(t.Name())
	createNamespace(ctx, t, e.Client, ns)

	out, err := e.Kubectl(ctx, "get", "namespace", ns, "-o", "name").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "namespace/"+ns {
		t.Errorf("kubectl get namespace: %q, %v", out, err)
	}

	st, err := os.Stat(e.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600", st.Mode().Perm())
	}
	// The bearer-token context sees the same cluster.
	raw, err := clientcmd.Load(e.KubeconfigBytes())
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.NewNonInteractiveClientConfig(*raw, "kubetest-token", nil, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if rc.BearerToken == "" || rc.CertData != nil {
		t.Fatalf("token context has token %q, cert %d bytes", rc.BearerToken, len(rc.CertData))
	}
	tc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("token user cannot read namespace %s: %v", ns, err)
	}
	// A wrong token is rejected: authentication is real.
	rc.BearerToken = "wrong"
	bad, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("wrong token: %v, want Unauthorized", err)
	}
	// Without kube-controller-manager, a deleted namespace stays Terminating.
	if err := e.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil || got.Status.Phase != corev1.NamespaceTerminating {
		t.Errorf("deleted namespace without kube-controller-manager: %v, %v; want Terminating", got.Status.Phase, err)
	}

	pids := []int{e.PID(compEtcd), e.PID(compAPIServer)}
	for i, p := range pids {
		if p == 0 {
			t.Fatalf("component %d has no PID", i)
		}
	}
	logPath := e.LogPath(compAPIServer)
	stopped = true
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		if err := syscall.Kill(p, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d alive after Stop (%v)", p, err)
		}
	}
	if _, err := os.Stat(e.Dir); !os.IsNotExist(err) {
		t.Errorf("Env dir %s still exists after Stop (%v)", e.Dir, err)
	}
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), "=== ") {
		t.Errorf("apiserver log in LogDir not kept after Stop: %v", err)
	}
	if err := e.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestParallelEnvs runs two Envs at once: their ports, data and credentials
// are separate.
func TestParallelEnvs(t *testing.T) {
	testutil.Slow(t, "needs the kube tools")
	ctx := testutil.Context(t, 3*time.Minute)
	envs := make([]*Env, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range envs {
		wg.Go(func() { envs[i], errs[i] = Start(ctx, Options{}) })
	}
	wg.Wait()
	for i, e := range envs {
		if e != nil {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("env %d logs:\n%s", i, e.LogTails(30))
				}
				if err := e.Stop(); err != nil {
					t.Error(err)
				}
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	a, b := envs[0], envs[1]
	if a.APIServerURL == b.APIServerURL || a.EtcdURL == b.EtcdURL || a.Dir == b.Dir {
		t.Fatalf("Envs share an address or dir: %s %s / %s %s", a.APIServerURL, a.EtcdURL, b.APIServerURL, b.EtcdURL)
	}
	createNamespace(ctx, t, a.Client, "only-in-a")
	if _, err := b.Client.CoreV1().Namespaces().Get(ctx, "only-in-a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace created in Env A visible in Env B: %v", err)
	}
	// Each Env's admin credentials are rejected by the other's apiserver.
	rc := a.RESTConfig()
	rc.Host = b.APIServerURL
	rc.TLSClientConfig.CAData = b.CACertPEM
	cross, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cross.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("Env A's client certificate against Env B: %v, want Unauthorized", err)
	}
}

// TestControllerManagerDeletesNamespace: with kube-controller-manager a deleted
// namespace (and the ConfigMap in it) goes away.
func TestControllerManagerDeletesNamespace(t *testing.T) {
	ctx := testutil.Context(t, 3*time.Minute)
	e := StartT(t, Options{ControllerManager: true})
	t.Logf("started in %v (kube-controller-manager %v)", e.Timings["total"], e.Timings[compControllerManager])
	ns := "doomed"
	createNamespace(ctx, t, e.Client, ns)
	if _, err := e.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := e.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := e.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("namespace %s still present (%v)", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("namespace gone %v after delete", time.Since(start))
	if _, err := e.Client.CoreV1().ConfigMaps(ns).Get(ctx, "cm", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ConfigMap in deleted namespace: %v, want NotFound", err)
	}
}
