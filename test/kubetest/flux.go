package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// FluxOptions configure the Flux controllers started by Start or StartFlux.
type FluxOptions struct {
	// RequeueDependency is both controllers' --requeue-dependency: how long a
	// HelmRelease waits before rechecking unready dependencies. Default 5 s
	// (Flux's own default is 30 s).
	RequeueDependency time.Duration
	// Concurrent is both controllers' --concurrent (0: the controllers'
	// defaults, 2 for source-controller and 4 for helm-controller).
	Concurrent int
	// LogLevel is --log-level (default "info"; "debug" shows every reconcile).
	LogLevel string
	// SourceControllerArgs and HelmControllerArgs are appended to the
	// controllers' command lines (later flags win).
	SourceControllerArgs []string
	HelmControllerArgs   []string
}

// fluxState is the running Flux configuration.
type fluxState struct {
	opts FluxOptions
}

// FieldManager is the server-side apply field manager kubetest uses.
const FieldManager = "kubetest"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallFluxCRDs server-side applies every CRD in FluxCRDDir and waits until
// all are Established. It is idempotent.
func (e *Env) InstallFluxCRDs(ctx context.Context) error {
	crds, err := readManifests(e.FluxCRDDir())
	if err != nil {
		return fmt.Errorf("reading Flux CRDs: %w", err)
	}
	if len(crds) == 0 {
		return fmt.Errorf("no CRDs in %s; %s", e.FluxCRDDir(), errToolsHint)
	}
	force := true
	for _, crd := range crds {
		body, err := crd.MarshalJSON()
		if err != nil {
			return fmt.Errorf("encoding CRD %s: %w", crd.GetName(), err)
		}
		if _, err := e.Dynamic.Resource(crdGVR).Patch(ctx, crd.GetName(), types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
			return fmt.Errorf("applying CRD %s: %w", crd.GetName(), err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, crd := range crds {
		if err := e.waitCRDEstablished(wctx, crd.GetName()); err != nil {
			return err
		}
	}
	return nil
}

func (e *Env) waitCRDEstablished(ctx context.Context, name string) error {
	for {
		obj, err := e.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil && conditionTrue(obj, "Established") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for CRD %s to be Established: %w (last error: %v)", name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// conditionTrue reports whether obj has status.conditions[type=t].status "True".
func conditionTrue(obj *unstructured.Unstructured, t string) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == t {
			return m["status"] == "True"
		}
	}
	return false
}

// readManifests decodes every object in the *.yaml files of dir, in file-name order.
func readManifests(dir string) ([]*unstructured.Unstructured, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var objs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("decoding %s: %w", f, err)
			}
			if len(m) == 0 {
				continue
			}
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
	return objs, nil
}

// StartFlux starts source-controller and helm-controller (out of cluster,
// KUBECONFIG = the admin kubeconfig, all namespaces, no leader election, no
// events) and waits for their /readyz. It installs the Flux CRDs first if
// needed. Call StopFlux before starting them again with other options; the
// source-controller storage address stays the same across restarts so
// existing artifact URLs remain valid.
func (e *Env) StartFlux(ctx context.Context, opts FluxOptions) error {
	e.mu.Lock()
	running := e.flux != nil
	e.mu.Unlock()
	if running {
		return errors.New("starting Flux: already running; call StopFlux first")
	}
	if opts.RequeueDependency <= 0 {
		opts.RequeueDependency = 5 * time.Second
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if !e.opts.InstallFluxCRDs && e.opts.Flux == nil {
		// Not installed by Start: apply them now (idempotent).
		if err := e.InstallFluxCRDs(ctx); err != nil {
			return err
		}
	}
	tmp := filepath.Join(e.Dir, "flux-tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("creating Flux temp directory: %w", err)
	}
	env := append(withoutEnv(os.Environ(), "KUBECONFIG", "TMPDIR"), "KUBECONFIG="+e.Kubeconfig, "TMPDIR="+tmp)
	common := []string{
		"--events-addr=", "--enable-leader-election=false", "--watch-all-namespaces=true",
		"--log-level=" + opts.LogLevel, "--log-encoding=console",
		"--requeue-dependency=" + opts.RequeueDependency.String(),
	}
	if opts.Concurrent > 0 {
		common = append(common, "--concurrent="+strconv.Itoa(opts.Concurrent))
	}
	hc := &http.Client{}
	readyz := func(port int) func(context.Context) error {
		url := "http://127.0.0.1:" + strconv.Itoa(port) + "/readyz"
		return func(ctx context.Context) error {
			_, err := httpGet(ctx, hc, url)
			return err
		}
	}

	storagePath := filepath.Join(e.Dir, "source-controller-storage")
	if err := os.MkdirAll(storagePath, 0o755); err != nil {
		return fmt.Errorf("creating source-controller storage: %w", err)
	}
	err := e.launch(ctx, compSourceController, env, func() ([]string, func(context.Context) error, error) {
		n := 2
		if e.storage == 0 {
			n = 3
		}
		ports, err := freePorts(n)
		if err != nil {
			return nil, nil, err
		}
		if e.storage == 0 {
			e.storage = ports[2]
		}
		storage := "127.0.0.1:" + strconv.Itoa(e.storage)
		args := append([]string{
			"--storage-path=" + storagePath, "--storage-addr=" + storage, "--storage-adv-addr=" + storage,
			"--metrics-addr=127.0.0.1:" + strconv.Itoa(ports[0]), "--health-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
		}, common...)
		args = append(args, opts.SourceControllerArgs...)
		return args, readyz(ports[1]), nil
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.flux = &fluxState{opts: opts}
	e.mu.Unlock()
	err = e.launch(ctx, compHelmController, env, func() ([]string, func(context.Context) error, error) {
		ports, err := freePorts(2)
		if err != nil {
			return nil, nil, err
		}
		args := append([]string{
			"--metrics-addr=127.0.0.1:" + strconv.Itoa(ports[0]), "--health-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
		}, common...)
		args = append(args, opts.HelmControllerArgs...)
		return args, readyz(ports[1]), nil
	})
	if err != nil {
		if stopErr := e.StopFlux(); stopErr != nil {
			err = fmt.Errorf("%w (and stopping Flux: %v)", err, stopErr)
		}
		return err
	}
	return nil
}

// StopFlux stops helm-controller and source-controller (by PID: SIGTERM, then
// SIGKILL after 10 s). The CRDs and Flux objects stay. It does nothing when
// Flux is not running.
func (e *Env) StopFlux() error {
	var errs []error
	for _, comp := range []string{compHelmController, compSourceController} {
		e.mu.Lock()
		p := e.procs[comp]
		delete(e.procs, comp)
		e.mu.Unlock()
		if p != nil {
			if err := p.stop(stopTimeout); err != nil {
				errs = append(errs, err)
			}
		}
	}
	e.mu.Lock()
	e.flux = nil
	e.mu.Unlock()
	return errors.Join(errs...)
}
