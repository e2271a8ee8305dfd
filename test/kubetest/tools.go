package kubetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ToolsEnvVar names the environment variable holding the tools directory that
// hack/deps/kube.sh builds into.
const ToolsEnvVar = "DODAI_TOOLS_DIR"

// Names of the binaries expected in ToolsDir.
const (
	binEtcd              = "etcd"
	binAPIServer         = "kube-apiserver"
	binControllerManager = "kube-controller-manager"
	binKubectl           = "kubectl"
	binSourceController  = "source-controller"
	binHelmController    = "helm-controller"
)

var requiredBinaries = []string{binEtcd, binAPIServer, binControllerManager, binKubectl, binSourceController, binHelmController}

// errToolsHint is the advice printed whenever the tools are missing.
const errToolsHint = "run hack/deps/kube.sh (or hack/test.sh) to build the test Kubernetes tools"

// toolsRoot returns the resolved kube-<key> directory that $DODAI_TOOLS_DIR/kube
// points at. Resolving the symlink once keeps an Env consistent if the cache is
// rebuilt while it runs.
func toolsRoot() (string, error) {
	base := os.Getenv(ToolsEnvVar)
	if base == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("finding the test Kubernetes tools: %s is unset and there is no home directory (%v); %s", ToolsEnvVar, err, errToolsHint)
			}
			cache = filepath.Join(home, ".cache")
		}
		base = filepath.Join(cache, "dodai", "tools")
	}
	link := filepath.Join(base, "kube")
	root, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", fmt.Errorf("finding the test Kubernetes tools in %s: %w; %s", link, err, errToolsHint)
	}
	bin := filepath.Join(root, "bin")
	var missing []error
	for _, name := range requiredBinaries {
		if _, err := os.Stat(filepath.Join(bin, name)); err != nil {
			missing = append(missing, err)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("test Kubernetes tools in %s are incomplete: %w; %s", bin, errors.Join(missing...), errToolsHint)
	}
	return root, nil
}

// ToolsDir returns the directory holding etcd, kube-apiserver,
// kube-controller-manager, kubectl, source-controller and helm-controller:
// $DODAI_TOOLS_DIR/kube/bin (default ~/.cache/dodai/tools/kube/bin), with the
// symlink resolved. It fails, naming hack/deps/kube.sh, when they are missing.
func ToolsDir() (string, error) {
	root, err := toolsRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// FluxCRDDir returns the directory holding the Flux CRDs (source-controller's
// and helm-controller's config/crd/bases) copied by hack/deps/kube.sh.
func FluxCRDDir() (string, error) {
	root, err := toolsRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "flux", "crds"), nil
}

// FluxManifestsDir returns the directory with the Flux manifests copied by
// hack/deps/kube.sh: crds/, and source-controller/{manager,rbac} and
// helm-controller/{manager,rbac} (the controllers' kustomize dirs).
func FluxManifestsDir() (string, error) {
	root, err := toolsRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "flux"), nil
}
