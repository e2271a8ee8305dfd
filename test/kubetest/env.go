package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/dodai-dev/dodai/internal/fsutil"

	"github.com/dodai-dev/dodai/internal/testutil"
)

// Options select what Start runs besides etcd and kube-apiserver.
type Options struct {
	// ControllerManager starts kube-controller-manager with the namespace,
	// garbage-collector, service-account and disruption controllers, so
	// deleted namespaces go away, owner references are honoured and
	// PodDisruptionBudgets get the status evictions are checked against.
	ControllerManager bool
	// Flux, when set, installs the Flux CRDs and starts source-controller and
	// helm-controller with these options.
	Flux *FluxOptions
	// InstallFluxCRDs applies the Flux CRDs without starting the controllers
	// (for server-side dry-runs of Flux objects).
	InstallFluxCRDs bool
	// LogDir receives one log file per component (etcd.log,
	// kube-apiserver.log, ...), appended across restarts and kept after Stop.
	// Empty means a directory inside Env.Dir, removed by Stop.
	LogDir string
	// StartTimeout bounds each component's wait for readiness (default 90 s;
	// the CPU may be shared with other test packages).
	StartTimeout time.Duration
}

// Env is a running control plane. Its exported fields are set by Start and
// must not be changed.
type Env struct {
	// Dir is the Env's temporary directory (data, PKI, kubeconfig), removed by Stop.
	Dir string
	// ToolsDir holds the binaries (see the package function ToolsDir).
	ToolsDir string
	// Kubeconfig is the path of an admin kubeconfig (mode 0600). Its default
	// context uses the admin client certificate; context "kubetest-token"
	// uses the admin bearer token.
	Kubeconfig string
	// APIServerURL is https://127.0.0.1:<port>.
	APIServerURL string
	// EtcdURL is http://127.0.0.1:<port>.
	EtcdURL string
	// CACertPEM is the cluster CA certificate (it signed the apiserver's
	// serving certificate and the admin client certificate).
	CACertPEM []byte
	// AdminToken is a bearer token of a system:masters user.
	AdminToken string
	// Client and Dynamic talk to the apiserver as the admin.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Timings records how long each component took to become ready.
	Timings map[string]time.Duration

	toolsRoot  string
	logDir     string
	keepLogs   bool
	opts       Options
	pki        *pki
	restConfig *rest.Config
	kubeconfig []byte

	mu       sync.Mutex
	procs    map[string]*process // by component name
	logs     map[string]string   // component name -> log path
	flux     *fluxState
	storage  int    // source-controller storage port, kept across StartFlux calls
	restart  bool   // RestoreEtcd: etcd and kube-apiserver come back on their ports
	etcdData string // etcd's data directory
	stopOnce sync.Once
	stopErr  error
}

// Component names, also the base names of their log files.
const (
	compEtcd              = "etcd"
	compAPIServer         = "kube-apiserver"
	compControllerManager = "kube-controller-manager"
	compSourceController  = "source-controller"
	compHelmController    = "helm-controller"
)

// Start runs etcd and kube-apiserver (and whatever opts adds) on 127.0.0.1
// with fresh ports, PKI and data, and returns once all are ready. On error,
// everything already started is stopped. Call Stop when done.
func Start(ctx context.Context, opts Options) (*Env, error) {
	begin := time.Now()
	root, err := toolsRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("creating Env directory: %w", err)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 90 * time.Second
	}
	e := &Env{
		Dir:       dir,
		ToolsDir:  filepath.Join(root, "bin"),
		toolsRoot: root,
		logDir:    opts.LogDir,
		keepLogs:  opts.LogDir != "",
		opts:      opts,
		procs:     map[string]*process{},
		logs:      map[string]string{},
		Timings:   map[string]time.Duration{},
	}
	if e.logDir == "" {
		e.logDir = filepath.Join(dir, "logs")
	}
	if err := e.start(ctx); err != nil {
		if stopErr := e.Stop(); stopErr != nil {
			err = fmt.Errorf("%w (and stopping: %v)", err, stopErr)
		}
		return nil, err
	}
	e.Timings["total"] = time.Since(begin)
	return e, nil
}

// StartT is Start for tests: it fails t on error, stops the Env in
// t.Cleanup, and prints the tails of the component logs if t failed.
// Start is bounded by 3 minutes.
func StartT(t testing.TB, opts Options) *Env {
	t.Helper()
	testutil.Slow(t, "needs the kube tools (a real kube-apiserver)")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	e, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting test Kubernetes: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("test Kubernetes logs (tails):\n%s", e.LogTails(40))
		}
		if err := e.Stop(); err != nil {
			t.Errorf("stopping test Kubernetes: %v", err)
		}
	})
	return e
}

func (e *Env) start(ctx context.Context) error {
	var err error
	if e.pki, err = newPKI(filepath.Join(e.Dir, "pki")); err != nil {
		return err
	}
	e.CACertPEM = e.pki.caCertPEM
	e.AdminToken = e.pki.adminToken
	if err := e.startEtcd(ctx); err != nil {
		return err
	}
	if err := e.startAPIServer(ctx); err != nil {
		return err
	}
	if err := e.writeKubeconfig(); err != nil {
		return err
	}
	if e.opts.ControllerManager {
		if err := e.startControllerManager(ctx); err != nil {
			return err
		}
	}
	if e.opts.InstallFluxCRDs || e.opts.Flux != nil {
		t := time.Now()
		if err := e.InstallFluxCRDs(ctx); err != nil {
			return err
		}
		e.Timings["flux-crds"] = time.Since(t)
	}
	if e.opts.Flux != nil {
		if err := e.StartFlux(ctx, *e.opts.Flux); err != nil {
			return err
		}
	}
	return nil
}

// bin returns the path of a tool binary.
func (e *Env) bin(name string) string { return filepath.Join(e.ToolsDir, name) }

// logPath returns (and records) the log file of a component.
func (e *Env) logPath(comp string) string {
	p := filepath.Join(e.logDir, comp+".log")
	e.mu.Lock()
	e.logs[comp] = p
	e.mu.Unlock()
	return p
}

// launch starts a component and waits until check passes. When the process
// dies because a port was taken between choosing and binding it, launch
// retries with new ports (args is called again each attempt).
func (e *Env) launch(ctx context.Context, comp string, env []string, args func() ([]string, func(context.Context) error, error)) error {
	begin := time.Now()
	for attempt := 1; ; attempt++ {
		argv, check, err := args()
		if err != nil {
			return err
		}
		p, err := startProcess(comp, e.logPath(comp), env, e.bin(comp), argv...)
		if err != nil {
			return err
		}
		err = p.waitReady(ctx, e.opts.StartTimeout, check)
		if err == nil {
			e.mu.Lock()
			e.procs[comp] = p
			e.mu.Unlock()
			e.Timings[comp] = time.Since(begin)
			return nil
		}
		if stopErr := p.stop(stopTimeout); stopErr != nil {
			err = fmt.Errorf("%w (and stopping: %v)", err, stopErr)
		}
		if attempt < 3 && errors.Is(err, errExited) && strings.Contains(p.tail(50), "address already in use") {
			continue
		}
		return fmt.Errorf("starting %s: %w", comp, err)
	}
}

func (e *Env) startEtcd(ctx context.Context) error {
	return e.startEtcdOn(ctx, filepath.Join(e.Dir, "etcd"), false)
}

// startEtcdOn starts etcd on the data directory data: a fresh one on new
// ports, or (keep, after RestoreEtcd) the existing one on the client port
// the apiserver already uses.
func (e *Env) startEtcdOn(ctx context.Context, data string, keep bool) error {
	e.etcdData = data
	return e.launch(ctx, compEtcd, os.Environ(), func() ([]string, func(context.Context) error, error) {
		ports, err := e.etcdPorts(keep)
		if err != nil {
			return nil, nil, err
		}
		if !keep {
			if err := os.RemoveAll(data); err != nil {
				return nil, nil, fmt.Errorf("clearing etcd data directory: %w", err)
			}
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		e.EtcdURL = client
		args := []string{
			"--name=kubetest", "--data-dir=" + data,
			"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=kubetest=" + peer,
			"--unsafe-no-fsync", "--log-level=warn",
		}
		hc := &http.Client{}
		return args, func(ctx context.Context) error {
			body, err := httpGet(ctx, hc, client+"/health")
			if err != nil {
				return err
			}
			var h struct {
				Health string `json:"health"`
			}
			if err := json.Unmarshal(body, &h); err != nil || h.Health != "true" {
				return fmt.Errorf("etcd /health returned %q", body)
			}
			return nil
		}, nil
	})
}

func (e *Env) startAPIServer(ctx context.Context) error {
	p := e.pki
	cert, err := tls.X509KeyPair(p.adminCertPEM, p.adminKeyPEM)
	if err != nil {
		return fmt.Errorf("loading admin certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caCertPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
	}}}
	defer hc.CloseIdleConnections()
	return e.launch(ctx, compAPIServer, os.Environ(), func() ([]string, func(context.Context) error, error) {
		ports, err := e.apiServerPorts()
		if err != nil {
			return nil, nil, err
		}
		e.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(ports[0])
		args := []string{
			"--etcd-servers=" + e.EtcdURL,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--cert-dir=" + filepath.Join(e.Dir, "apiserver"),
			"--tls-cert-file=" + p.serverCert, "--tls-private-key-file=" + p.serverKey,
			"--client-ca-file=" + p.caCert, "--token-auth-file=" + p.tokenFile,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p.saPub, "--service-account-signing-key-file=" + p.saKey,
			"--service-cluster-ip-range=10.96.0.0/12",
			"--authorization-mode=RBAC",
			// No kube-controller-manager by default, so no "default" ServiceAccount to admit pods with.
			"--disable-admission-plugins=ServiceAccount",
			"--allow-privileged=true",
			// A loopback advertise address is invalid in the "kubernetes" Endpoints.
			"--endpoint-reconciler-type=none",
		}
		url := e.APIServerURL + "/readyz"
		return args, func(ctx context.Context) error {
			body, err := httpGet(ctx, hc, url)
			if err != nil {
				return err
			}
			if string(body) != "ok" {
				return fmt.Errorf("/readyz returned %q", body)
			}
			return nil
		}, nil
	})
}

func (e *Env) startControllerManager(ctx context.Context) error {
	// kube-controller-manager serves /healthz with a self-signed certificate
	// it generates in --cert-dir; the readiness probe (loopback only) does not
	// verify it.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback health probe of a self-signed test server
	defer hc.CloseIdleConnections()
	return e.launch(ctx, compControllerManager, os.Environ(), func() ([]string, func(context.Context) error, error) {
		ports, err := freePorts(1)
		if err != nil {
			return nil, nil, err
		}
		args := []string{
			"--kubeconfig=" + e.Kubeconfig,
			"--authentication-kubeconfig=" + e.Kubeconfig, "--authorization-kubeconfig=" + e.Kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[0]),
			"--cert-dir=" + filepath.Join(e.Dir, "kube-controller-manager"),
			"--leader-elect=false",
			// disruption-controller keeps PodDisruptionBudget status, which
			// the Eviction API enforces (drain tests).
			"--controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,disruption-controller",
			"--service-account-private-key-file=" + e.pki.saKey, "--root-ca-file=" + e.pki.caCert,
			"--use-service-account-credentials=false",
		}
		url := "https://127.0.0.1:" + strconv.Itoa(ports[0]) + "/healthz"
		return args, func(ctx context.Context) error {
			body, err := httpGet(ctx, hc, url)
			if err != nil {
				return err
			}
			if string(body) != "ok" {
				return fmt.Errorf("/healthz returned %q", body)
			}
			return nil
		}, nil
	})
}

// httpGet returns the body of a 200 response.
func httpGet(ctx context.Context, hc *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %q", url, resp.Status, body)
	}
	return body, nil
}

// writeKubeconfig writes the admin kubeconfig (0600, atomically) and builds
// the clients.
func (e *Env) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: e.APIServerURL, CertificateAuthorityData: e.pki.caCertPEM}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: e.pki.adminCertPEM, ClientKeyData: e.pki.adminKeyPEM}
	cfg.AuthInfos["admin-token"] = &clientcmdapi.AuthInfo{Token: e.pki.adminToken}
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin"}
	cfg.Contexts["kubetest-token"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "admin-token"}
	cfg.CurrentContext = "kubetest"
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding kubeconfig: %w", err)
	}
	e.kubeconfig = b
	e.Kubeconfig = filepath.Join(e.Dir, "kubeconfig")
	if err := fsutil.WriteFileAtomic(e.Kubeconfig, b, 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(b)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	rc.QPS, rc.Burst = 100, 200
	e.restConfig = rc
	if e.Client, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("creating Kubernetes client: %w", err)
	}
	if e.Dynamic, err = dynamic.NewForConfig(rc); err != nil {
		return fmt.Errorf("creating dynamic client: %w", err)
	}
	return nil
}

// Kubectl returns a kubectl command (the v1.36.3 build from ToolsDir) that
// talks to this Env as the admin (KUBECONFIG is set).
func (e *Env) Kubectl(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, e.bin(binKubectl), args...)
	cmd.Env = append(withoutEnv(os.Environ(), "KUBECONFIG"), "KUBECONFIG="+e.Kubeconfig)
	return cmd
}

// withoutEnv drops the variables named in keys from env.
func withoutEnv(env []string, keys ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, k := range keys {
			if strings.HasPrefix(kv, k+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// KubeconfigBytes returns the admin kubeconfig.
func (e *Env) KubeconfigBytes() []byte { return append([]byte(nil), e.kubeconfig...) }

// RESTConfig returns a copy of the admin client configuration.
func (e *Env) RESTConfig() *rest.Config { return rest.CopyConfig(e.restConfig) }

// FluxCRDDir is the directory with the Flux CRD manifests this Env uses.
func (e *Env) FluxCRDDir() string { return filepath.Join(e.toolsRoot, "flux", "crds") }

// FluxManifestsDir is the directory with the Flux manifests this Env uses:
// crds/, source-controller/{manager,rbac}, helm-controller/{manager,rbac}.
func (e *Env) FluxManifestsDir() string { return filepath.Join(e.toolsRoot, "flux") }

// PID returns the process ID of a running component ("etcd",
// "kube-apiserver", "kube-controller-manager", "source-controller",
// "helm-controller"), or 0.
func (e *Env) PID(component string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.procs[component]; p != nil && !p.exited() {
		return p.pid()
	}
	return 0
}

// LogPath returns the log file of a component ("" if it never ran).
func (e *Env) LogPath(component string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.logs[component]
}

// LogTails returns the last n lines of every component's log, each under a
// header naming the file.
func (e *Env) LogTails(n int) string {
	e.mu.Lock()
	comps := make([]string, 0, len(e.logs))
	for c := range e.logs {
		comps = append(comps, c)
	}
	paths := make(map[string]string, len(e.logs))
	for c, p := range e.logs {
		paths[c] = p
	}
	e.mu.Unlock()
	sort.Strings(comps)
	var b strings.Builder
	for _, c := range comps {
		fmt.Fprintf(&b, "----- %s (%s) -----\n%s\n", c, paths[c], tailFile(paths[c], n))
	}
	return b.String()
}

// Stop stops every component by its recorded PID (SIGTERM, then SIGKILL after
// 10 s) in reverse start order and removes Dir (logs in Options.LogDir stay).
// It is safe to call more than once.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		var errs []error
		if err := e.StopFlux(); err != nil {
			errs = append(errs, err)
		}
		for _, comp := range []string{compControllerManager, compAPIServer, compEtcd} {
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
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", e.Dir, err))
		}
		e.stopErr = errors.Join(errs...)
	})
	return e.stopErr
}
