// Package incltest starts what the in-cluster tests share: a real
// kube-apiserver (test/kubetest) with dodai's CRDs installed and a fresh
// namespace. Only tests import it.
package incltest

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/dodai-dev/dodai/internal/incluster/crds"
	"github.com/dodai-dev/dodai/internal/incluster/kube"
	"github.com/dodai-dev/dodai/test/kubetest"
)

// Namespace is the namespace Start creates.
const Namespace = "dodai-test"

// Cluster is a running apiserver with dodai's CRDs.
type Cluster struct {
	Env *kubetest.Env
	// REST has client-side rate limiting off.
	REST   *rest.Config
	Client client.Client
}

// Start skips in -short mode; otherwise it starts the apiserver (stopped
// in t.Cleanup), installs the CRDs and creates Namespace.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the test Kubernetes (kube-apiserver + etcd)")
	}
	ctrllog.SetLogger(logr.Discard())
	env := kubetest.StartT(t, kubetest.Options{})
	cfg := env.RESTConfig()
	cfg.QPS, cfg.Burst = -1, 0
	c, err := kube.Client(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := crds.Install(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}); err != nil {
		t.Fatal(err)
	}
	return &Cluster{Env: env, REST: cfg, Client: c}
}
