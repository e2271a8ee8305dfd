package cli

import (
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/dodai-dev/dodai/internal/incluster/kube"
)

// inClusterFlags are the flags of the commands that run inside the cluster
// (controller, netboot --in-cluster). Their defaults come from the
// environment a pod of the dodai chart has ($KUBECONFIG, $POD_NAMESPACE,
// $POD_NAME); this is the one place that reads it.
type inClusterFlags struct {
	kubeconfig, namespace, name string
}

func (k *inClusterFlags) register(f *pflag.FlagSet, withName bool) {
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig (default $KUBECONFIG, else the pod's service account)")
	f.StringVar(&k.namespace, "namespace", "", "namespace of the Machines and DHCPLeases (default $POD_NAMESPACE, else the pod's, else "+kube.DefaultNamespace+")")
	if withName {
		f.StringVar(&k.name, "server-name", "", "this boot server's name in the objects it writes (default $POD_NAME, else the host name)")
	}
}

// rest is the client config: --kubeconfig, $KUBECONFIG, else the pod's
// service account.
func (k *inClusterFlags) rest(qps float32, burst int) (*rest.Config, error) {
	path := k.kubeconfig
	if path == "" {
		path = os.Getenv("KUBECONFIG")
	}
	return kube.RESTConfig(path, qps, burst)
}

// ns is --namespace, $POD_NAMESPACE, the service account's, or the default.
func (k *inClusterFlags) ns() string {
	if k.namespace != "" {
		return k.namespace
	}
	return kube.Namespace(os.Getenv("POD_NAMESPACE"))
}

// serverName is --server-name, $POD_NAME, else the host name.
func (k *inClusterFlags) serverName() string {
	if k.name != "" {
		return k.name
	}
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "dodai"
}
