package bootstrap_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dodai-dev/dodai/test/kubetest"
)

// One real kube-apiserver (+etcd) for the package: the fake control planes
// hand out its kubeconfig, so "Kubernetes is healthy" is checked for real.
var kubeShared kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kubeShared.Run(m)) }

type kubeEnv struct {
	env        *kubetest.Env
	kubeconfig []byte
}

func startKube(t testing.TB) *kubeEnv {
	t.Helper()
	env := kubeShared.Env(t)
	return &kubeEnv{env: env, kubeconfig: env.KubeconfigBytes()}
}

// check runs `kubectl get ns` and a client-go namespace list with the
// kubeconfig dodai wrote.
func (k *kubeEnv) check(ctx context.Context, t testing.TB, path string) {
	t.Helper()
	cmd := k.env.Kubectl(ctx, "--kubeconfig", path, "get", "ns", "-o", "name")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "namespace/kube-system") || !strings.Contains(string(out), "namespace/default") {
		t.Fatalf("kubectl get ns: %v\n%s", err, out)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing namespaces with the written kubeconfig: %v", err)
	}
	var names []string
	for _, ns := range nss.Items {
		names = append(names, ns.Name)
	}
	if !slices.Contains(names, "default") || !slices.Contains(names, "kube-system") {
		t.Fatalf("namespaces: %v", names)
	}
}
