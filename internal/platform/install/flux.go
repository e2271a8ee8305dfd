package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// FluxVersion is the Flux release dodai installs by default: the newest
// Flux 2.9 release (source-controller v1.9.5, helm-controller v1.6.4, on
// Helm v4). dodai renders helm-controller API v1.6.3 (the same Go types as
// v1.6.4) and source-controller API v1.9.1, and its tests run
// helm-controller v1.6.4 and source-controller v1.9.1 (test/tools).
const FluxVersion = "v2.9.5"

// FluxOptions say how the Flux manifests are patched.
type FluxOptions struct {
	// APIHost and APIPort reach the API server without a Service (Talos
	// KubePrism: localhost:7445), because there is no CNI or kube-proxy yet.
	APIHost string
	APIPort int
	// RequeueDependency is --requeue-dependency (default 5s, Flux's is 30s).
	RequeueDependency time.Duration
	// Concurrent is --concurrent (default 20, Flux's is 4).
	Concurrent int
}

func (o *FluxOptions) defaults() {
	if o.APIHost == "" {
		o.APIHost = "localhost"
	}
	if o.APIPort == 0 {
		o.APIPort = 7445
	}
	if o.RequeueDependency == 0 {
		o.RequeueDependency = 5 * time.Second
	}
	if o.Concurrent == 0 {
		o.Concurrent = 20
	}
}

// Controllers dodai runs: everything else in the manifests (kustomize-,
// notification-, image-controllers) is left to the "fluxcd" component.
var Controllers = map[string]hostPorts{
	// On the host network every port is a host port: give each controller
	// its own (Flux's defaults, :8080 and :9440, would collide).
	"source-controller": {storage: 9790, metrics: 9791, health: 9792},
	"helm-controller":   {metrics: 9793, health: 9794},
}

type hostPorts struct{ storage, metrics, health int }

// FluxReleaseURL is where Flux publishes a release's install manifests.
func FluxReleaseURL(version string) string {
	return "https://github.com/fluxcd/flux2/releases/download/" + version + "/install.yaml"
}

// maxManifestBytes bounds a downloaded install.yaml (Flux's is ~800 KB).
const maxManifestBytes = 64 << 20

// LoadFluxManifests reads Flux's install manifests: an http(s) URL (Flux's
// release asset install.yaml or a mirror of it), a file, or a directory,
// built with kustomize when it holds a kustomization.yaml, else every *.yaml
// in it.
func LoadFluxManifests(ctx context.Context, path string) ([]*unstructured.Unstructured, error) {
	if strings.HasPrefix(path, "https://") || strings.HasPrefix(path, "http://") {
		b, err := fetchManifests(ctx, path)
		if err != nil {
			return nil, err
		}
		return DecodeYAML(b, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading Flux manifests: %w", err)
	}
	if !st.IsDir() {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading Flux manifests: %w", err)
		}
		return DecodeYAML(b, path)
	}
	if _, err := os.Stat(filepath.Join(path, "kustomization.yaml")); err == nil {
		k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
		rm, err := k.Run(filesys.MakeFsOnDisk(), path)
		if err != nil {
			return nil, fmt.Errorf("building Flux manifests with kustomize in %s: %w", path, err)
		}
		b, err := rm.AsYaml()
		if err != nil {
			return nil, fmt.Errorf("encoding kustomize output of %s: %w", path, err)
		}
		return DecodeYAML(b, path)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing Flux manifests: %w", err)
	}
	sort.Strings(files)
	var out []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		objs, err := DecodeYAML(b, f)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

// DecodeYAML decodes a multi-document YAML stream into objects; name is
// used in errors.
func DecodeYAML(b []byte, name string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("decoding %s, document %d: %w", name, i+1, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("decoding %s, document %d: not a Kubernetes object (needs apiVersion, kind, metadata.name)", name, i+1)
		}
		if u.GetKind() == "List" {
			return nil, fmt.Errorf("decoding %s, document %d: List objects are not supported", name, i+1)
		}
		out = append(out, u)
	}
	return out, nil
}

// PatchFlux prepares Flux's manifests to run before any CNI exists: only
// source-controller and helm-controller are kept, both on the host network
// with their own host ports, tolerating not-ready and uninitialized nodes,
// reaching the API server through APIHost:APIPort, with
// --requeue-dependency and --concurrent set. The input is not modified.
func PatchFlux(objs []*unstructured.Unstructured, o FluxOptions) ([]*unstructured.Unstructured, error) {
	o.defaults()
	var out []*unstructured.Unstructured
	found := map[string]bool{}
	for _, in := range objs {
		u := in.DeepCopy()
		if u.GetKind() == "Deployment" {
			ports, ok := Controllers[u.GetName()]
			if !ok {
				continue
			}
			found[u.GetName()] = true
			if err := patchController(u, ports, o); err != nil {
				return nil, fmt.Errorf("patching Deployment %s: %w", u.GetName(), err)
			}
		}
		out = append(out, u)
	}
	for name := range Controllers {
		if !found[name] {
			return nil, fmt.Errorf("the Flux manifests have no Deployment %q", name)
		}
	}
	return out, nil
}

func patchController(u *unstructured.Unstructured, p hostPorts, o FluxOptions) error {
	pod, ok, _ := unstructured.NestedMap(u.Object, "spec", "template", "spec")
	if !ok {
		return fmt.Errorf("no spec.template.spec")
	}
	pod["hostNetwork"] = true
	pod["dnsPolicy"] = "ClusterFirstWithHostNet"
	tols, _ := pod["tolerations"].([]any)
	for _, key := range []string{"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable",
		"node.cloudprovider.kubernetes.io/uninitialized", "node-role.kubernetes.io/control-plane", "node.cilium.io/agent-not-ready"} {
		tols = append(tols, map[string]any{"key": key, "operator": "Exists"})
	}
	pod["tolerations"] = tols
	containers, _ := pod["containers"].([]any)
	if len(containers) == 0 {
		return fmt.Errorf("no containers")
	}
	for i, c := range containers {
		cm, ok := c.(map[string]any)
		if !ok {
			return fmt.Errorf("container %d is not an object", i)
		}
		setEnv(cm, "KUBERNETES_SERVICE_HOST", map[string]any{"value": o.APIHost})
		setEnv(cm, "KUBERNETES_SERVICE_PORT", map[string]any{"value": strconv.Itoa(o.APIPort)})
		args := toStrings(cm["args"])
		args = setFlag(args, "--requeue-dependency", o.RequeueDependency.String())
		args = setFlag(args, "--concurrent", strconv.Itoa(o.Concurrent))
		args = setFlag(args, "--metrics-addr", ":"+strconv.Itoa(p.metrics))
		args = setFlag(args, "--health-addr", ":"+strconv.Itoa(p.health))
		portByName := map[string]int{"http-prom": p.metrics, "healthz": p.health}
		if p.storage != 0 {
			// Artifacts are fetched by helm-controller from the advertised
			// address: the node's IP (no Service DNS without a CNI).
			setEnv(cm, "HOST_IP", map[string]any{"valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "status.hostIP"}}})
			args = setFlag(args, "--storage-addr", ":"+strconv.Itoa(p.storage))
			args = setFlag(args, "--storage-adv-addr", "$(HOST_IP):"+strconv.Itoa(p.storage))
			portByName["http"] = p.storage
		}
		cm["args"] = toAny(args)
		ports, _ := cm["ports"].([]any)
		for _, pp := range ports {
			pm, _ := pp.(map[string]any)
			if n, ok := portByName[fmt.Sprint(pm["name"])]; ok {
				pm["containerPort"] = int64(n)
			}
		}
		containers[i] = cm
	}
	pod["containers"] = containers
	if ann, ok, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "annotations"); ok {
		if _, has := ann["prometheus.io/port"]; has {
			ann["prometheus.io/port"] = strconv.Itoa(p.metrics)
			_ = unstructured.SetNestedStringMap(u.Object, ann, "spec", "template", "metadata", "annotations")
		}
	}
	return unstructured.SetNestedMap(u.Object, pod, "spec", "template", "spec")
}

// setEnv sets (or replaces) one environment variable; its value is either
// {"value": ...} or {"valueFrom": ...}. HOST_IP-style references must come
// before their users, so new variables are prepended.
func setEnv(c map[string]any, name string, val map[string]any) {
	env, _ := c["env"].([]any)
	e := map[string]any{"name": name}
	for k, v := range val {
		e[k] = v
	}
	for i, x := range env {
		if m, ok := x.(map[string]any); ok && m["name"] == name {
			env[i] = e
			c["env"] = env
			return
		}
	}
	c["env"] = append([]any{e}, env...)
}

// setFlag replaces --name=... (or --name value) in args, or appends it.
func setFlag(args []string, name, value string) []string {
	out := make([]string, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == name {
			i++ // skip its separate value
			continue
		}
		if strings.HasPrefix(a, name+"=") {
			continue
		}
		out = append(out, a)
	}
	return append(out, name+"="+value)
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// CheckFlux verifies what PatchFlux promises on the Deployments of objs
// (e.g. read back from the API server) and returns the problems found.
func CheckFlux(objs []*unstructured.Unstructured, o FluxOptions) []string {
	o.defaults()
	var problems []string
	bad := func(f string, a ...any) { problems = append(problems, fmt.Sprintf(f, a...)) }
	for _, u := range objs {
		if u.GetKind() == "Deployment" {
			if _, ok := Controllers[u.GetName()]; !ok {
				bad("unexpected Deployment %s", u.GetName())
			}
		}
	}
	for name, ports := range Controllers {
		var d appsv1.Deployment
		var found bool
		for _, u := range objs {
			if u.GetKind() == "Deployment" && u.GetName() == name {
				found = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d) == nil
			}
		}
		if !found {
			bad("%s missing", name)
			continue
		}
		ps := d.Spec.Template.Spec
		if !ps.HostNetwork || ps.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			bad("%s: hostNetwork %v dnsPolicy %s", name, ps.HostNetwork, ps.DNSPolicy)
		}
		tol := map[string]bool{}
		for _, t := range ps.Tolerations {
			if t.Operator == corev1.TolerationOpExists {
				tol[t.Key] = true
			}
		}
		for _, k := range []string{"node.kubernetes.io/not-ready", "node.cloudprovider.kubernetes.io/uninitialized", "node-role.kubernetes.io/control-plane"} {
			if !tol[k] {
				bad("%s: no toleration for %s", name, k)
			}
		}
		c := ps.Containers[0]
		if e := env(c, "KUBERNETES_SERVICE_HOST"); e == nil || e.Value != o.APIHost {
			bad("%s: KUBERNETES_SERVICE_HOST %v", name, e)
		}
		if e := env(c, "KUBERNETES_SERVICE_PORT"); e == nil || e.Value != fmt.Sprintf("%d", o.APIPort) {
			bad("%s: KUBERNETES_SERVICE_PORT %v", name, e)
		}
		args := strings.Join(c.Args, " ")
		for _, want := range []string{"--requeue-dependency=" + o.RequeueDependency.String(), fmt.Sprintf("--concurrent=%d", o.Concurrent),
			fmt.Sprintf("--metrics-addr=:%d", ports.metrics), fmt.Sprintf("--health-addr=:%d", ports.health)} {
			if strings.Count(args, strings.SplitN(want, "=", 2)[0]) != 1 || !strings.Contains(args, want) {
				bad("%s: args %q lack exactly one %s", name, args, want)
			}
		}
		for _, p := range c.Ports {
			if p.Name == "healthz" && int(p.ContainerPort) != ports.health {
				bad("%s: healthz port %d", name, p.ContainerPort)
			}
		}
	}
	return problems
}

func env(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

func fetchManifests(ctx context.Context, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("downloading Flux manifests: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("downloading Flux manifests (air-gapped? point spec.platform.flux.manifests or --flux-manifests at a local copy): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("downloading Flux manifests from %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("downloading Flux manifests from %s: %w", url, err)
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("downloading Flux manifests from %s: larger than %d MiB", url, maxManifestBytes>>20)
	}
	return b, nil
}
