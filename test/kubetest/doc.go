// Package kubetest runs a real, throw-away Kubernetes control plane for tests:
// etcd and kube-apiserver (and optionally kube-controller-manager and the Flux
// source-controller and helm-controller) as child processes on 127.0.0.1.
//
// The binaries are built from Go modules by hack/deps/kube.sh into
// $DODAI_TOOLS_DIR/kube/bin (see ToolsDir); nothing is downloaded at test time.
// Every Env gets its own temporary directory, its own PKI generated with
// crypto/x509 and its own dynamically chosen free ports, so Envs from different
// test packages (or several in one test) run side by side.
//
//	env := kubetest.StartT(t, kubetest.Options{Flux: &kubetest.FluxOptions{}})
//	repo := kubetest.ServeHelmRepo(t, map[string]kubetest.ChartSpec{"demo": {}})
//	// create a HelmRepository pointing at repo and HelmReleases with env.Dynamic ...
//
// Processes are stopped by their recorded PID (SIGTERM, then SIGKILL after a
// timeout), never by name. A start aborts as soon as a process dies and the
// error carries the tail of its log. See docs/test-cluster.md.
package kubetest
