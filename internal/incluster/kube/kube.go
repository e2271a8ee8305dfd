// Package kube holds what dodai's in-cluster parts share to reach the
// apiserver: the scheme with dodai.dev/v1alpha1 and the core types, the REST
// config (a kubeconfig, or the pod's service account), and the namespace
// they keep their objects in. Which kubeconfig, namespace and name to use
// is the command's decision (flags, environment): nothing here reads the
// environment.
package kube

import (
	"fmt"
	"os"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/dodai-dev/dodai/api/v1alpha1"
)

// DefaultNamespace is where dodai's in-cluster objects live unless told
// otherwise (the chart installs into it).
const DefaultNamespace = "dodai-system"

// Scheme knows dodai.dev/v1alpha1, the core API, Leases (the boot
// servers' heartbeats) and CRDs.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, corev1.AddToScheme, coordinationv1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err) // static registrations cannot fail
		}
	}
	return s
}

// RESTConfig loads the kubeconfig file at path, or the pod's service
// account config when path is empty (the caller decides which: this
// package reads no environment). qps < 0 turns client side rate limiting
// off (DHCP bursts must not queue behind it).
func RESTConfig(path string, qps float32, burst int) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if path != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", path)
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		err = fmt.Errorf("%w (not in a pod, and no kubeconfig was given)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("loading Kubernetes client config: %w", err)
	}
	cfg.QPS, cfg.Burst = qps, burst
	cfg.UserAgent = "dodai"
	return cfg, nil
}

// Client returns a client for cfg with Scheme.
func Client(cfg *rest.Config) (client.Client, error) {
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client: %w", err)
	}
	return c, nil
}

// serviceAccountNamespace is where a pod finds its own namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// Namespace is ns when set, else the pod's namespace from its service
// account, else DefaultNamespace.
func Namespace(ns string) string {
	if ns != "" {
		return ns
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b))
	}
	return DefaultNamespace
}
