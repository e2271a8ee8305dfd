// Package httpboot is dodai netboot's HTTP side: the per-machine iPXE
// script (/boot.ipxe), the Talos kernel and initramfs (/assets/<arch>/…,
// with Range and sendfile), iPXE binaries for UEFI HTTP boot (/ipxe/…), the
// machine config for known machines (/config, only when configs are served,
// and only to the machine's own address) and the boot-once controls
// (/installed, /reinstall, loopback only).
package httpboot

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/ipxe"
	"github.com/dodai-dev/dodai/internal/netboot/registry"
	"github.com/dodai-dev/dodai/internal/state"
)

// Assets are the kernel and initramfs paths of one architecture.
type Assets struct {
	Kernel, Initramfs string
}

// ConfigFunc returns the rendered machine config of a node.
type ConfigFunc func(node string) ([]byte, error)

// Machines is what the HTTP side needs from the machine registry
// (*registry.Registry, or another store with the same rules).
type Machines interface {
	Node(mac macaddr.MAC) (string, bool)
	Known(mac macaddr.MAC) bool
	Installed(mac macaddr.MAC) bool
	ConfigAllowed(mac macaddr.MAC, ip netip.Addr) bool
	Observe(mac macaddr.MAC, src registry.Source, ip netip.Addr, arch string, stage registry.Stage) state.Machine
	SetInstalled(mac macaddr.MAC, installed bool) state.Machine
}

// Server serves the HTTP endpoints. Build it with New.
type Server struct {
	baseURL      string
	assets       map[string]Assets
	ipxeFiles    map[string]string
	extraArgs    []string
	reg          Machines
	config       ConfigFunc
	serveConfigs bool
	log          *slog.Logger

	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

// Options configure New.
type Options struct {
	// BaseURL is how machines reach this server, e.g. http://10.0.0.1:8080.
	BaseURL string
	// Assets per architecture (amd64, arm64).
	Assets map[string]Assets
	// IPXEFiles maps the iPXE binaries served under /ipxe/ for UEFI HTTP
	// boot (names relative, slash-separated) to their files; nothing else
	// is reachable there.
	IPXEFiles map[string]string
	// ExtraKernelArgs from spec.image.extraKernelArgs.
	ExtraKernelArgs []string
	Registry        Machines
	// ServeConfigs puts talos.config= on known machines' kernel command
	// line and serves /config; when false every machine boots into Talos
	// maintenance mode and /config answers 404.
	ServeConfigs bool
	// Config renders a node's machine config (needed with ServeConfigs).
	Config ConfigFunc
	Log    *slog.Logger
	// Metrics registers the HTTP counters (optional).
	Metrics prometheus.Registerer
}

// New builds the server.
func New(o Options) (*Server, error) {
	if o.ServeConfigs && o.Config == nil {
		return nil, fmt.Errorf("httpboot: ServeConfigs without a Config renderer")
	}
	s := &Server{baseURL: o.BaseURL, assets: o.Assets, ipxeFiles: o.IPXEFiles,
		extraArgs: o.ExtraKernelArgs, reg: o.Registry, config: o.Config, serveConfigs: o.ServeConfigs, log: o.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dodai_netboot_http_requests_total", Help: "HTTP requests by endpoint and status code."}, []string{"endpoint", "code"})
	s.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dodai_netboot_http_sent_bytes_total", Help: "Bytes of files sent, by endpoint."}, []string{"endpoint"})
	if o.Metrics != nil {
		for _, c := range []prometheus.Collector{s.requests, s.bytes} {
			if err := o.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("registering HTTP metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Handler returns the mux with every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.bootScript)
	mux.HandleFunc("GET /assets/{arch}/{file}", s.asset)
	mux.HandleFunc("GET /ipxe/{path...}", s.ipxeFile)
	mux.HandleFunc("GET /config", s.machineConfig)
	mux.HandleFunc("POST /installed", s.setInstalled(true))
	mux.HandleFunc("POST /reinstall", s.setInstalled(false))
	return mux
}

// statusWriter records the status code and counts body bytes.
type statusWriter struct {
	http.ResponseWriter
	code int
	n    int64
}

func (w *statusWriter) WriteHeader(c int) { w.code = c; w.ResponseWriter.WriteHeader(c) }

func (w *statusWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps zero-copy sending: http.ServeContent's io.Copy reaches the
// connection's ReadFrom (sendfile for an *os.File, also behind the
// io.LimitedReader of a Range request) through this.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := w.ResponseWriter.(io.ReaderFrom).ReadFrom(r)
	w.n += n
	return n, err
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func (s *Server) count(endpoint string, code int) {
	s.requests.WithLabelValues(endpoint, strconv.Itoa(code)).Inc()
}

func (s *Server) fail(w http.ResponseWriter, endpoint string, code int, msg string) {
	s.count(endpoint, code)
	http.Error(w, msg, code)
}

// bootScript renders the machine's iPXE script.
func (s *Server) bootScript(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("mac") == "" {
		s.count("boot.ipxe", 200)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, ipxe.Rechain(s.baseURL))
		return
	}
	mac, err := macaddr.Parse(q.Get("mac"))
	if err != nil {
		s.fail(w, "boot.ipxe", http.StatusBadRequest, "mac: "+err.Error())
		return
	}
	arch, ok := ipxe.NormalizeArch(q.Get("arch"))
	if !ok {
		s.fail(w, "boot.ipxe", http.StatusBadRequest, fmt.Sprintf("arch %q is not supported (amd64, arm64)", q.Get("arch")))
		return
	}
	var script string
	if s.reg.Installed(mac) {
		script = ipxe.LocalDisk(mac)
		s.log.Debug("machine is installed: booting it from disk", "mac", mac)
	} else {
		if _, ok := s.assets[arch]; !ok {
			s.fail(w, "boot.ipxe", http.StatusNotFound, "no Talos assets for "+arch+" (see --assets)")
			return
		}
		script, err = ipxe.Boot(ipxe.Params{BaseURL: s.baseURL, MAC: mac, Arch: arch, Config: s.serveConfigs && s.reg.Known(mac), ExtraArgs: s.extraArgs})
		if err != nil {
			s.fail(w, "boot.ipxe", http.StatusInternalServerError, err.Error())
			return
		}
		s.reg.Observe(mac, registry.FromHTTP, remoteAddr(r), arch, registry.StageIPXE)
	}
	s.count("boot.ipxe", 200)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(script)))
	fmt.Fprint(w, script)
}

// asset sends the kernel or initramfs with Range support; the body goes
// out via sendfile (http.ServeContent over *os.File).
func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	arch, file := r.PathValue("arch"), r.PathValue("file")
	a, ok := s.assets[arch]
	var path string
	var stage registry.Stage
	switch {
	case !ok:
	case file == ipxe.Kernel:
		path, stage = a.Kernel, registry.StageKernel
	case file == ipxe.Initramfs:
		path, stage = a.Initramfs, registry.StageInitramfs
	}
	if path == "" {
		s.fail(w, "assets", http.StatusNotFound, "not found")
		return
	}
	if m := r.URL.Query().Get("mac"); m != "" {
		if mac, err := macaddr.Parse(m); err == nil && r.Header.Get("Range") == "" {
			s.reg.Observe(mac, registry.FromHTTP, remoteAddr(r), arch, stage)
		}
	}
	s.serveFile(w, r, "assets", path)
}

func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, endpoint, path string) {
	f, err := os.Open(path)
	if err != nil {
		s.log.Error("opening file to serve", "path", path, "err", err)
		s.fail(w, endpoint, http.StatusInternalServerError, "cannot open file")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		s.fail(w, endpoint, http.StatusInternalServerError, "cannot read file")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	sw := &statusWriter{ResponseWriter: w, code: 200}
	start := time.Now()
	http.ServeContent(sw, r, filepath.Base(path), st.ModTime(), f)
	s.count(endpoint, sw.code)
	if sw.code < 300 {
		s.bytes.WithLabelValues(endpoint).Add(float64(sw.n))
	}
	s.log.Debug("sent file", "path", path, "to", r.RemoteAddr, "code", sw.code, "bytes", sw.n, "duration", time.Since(start))
}

// ipxeFile serves the iPXE binaries for UEFI HTTP boot; only the listed
// names, so nothing outside them is reachable.
func (s *Server) ipxeFile(w http.ResponseWriter, r *http.Request) {
	path, ok := s.ipxeFiles[r.PathValue("path")]
	if !ok {
		s.fail(w, "ipxe", http.StatusNotFound, "not found")
		return
	}
	s.serveFile(w, r, "ipxe", path)
}

// machineConfig serves a known machine's config, only to the address the
// machine's own DHCP exchange bound; everything else is 403. Without
// ServeConfigs it serves nothing (404).
func (s *Server) machineConfig(w http.ResponseWriter, r *http.Request) {
	from := remoteAddr(r)
	if !s.serveConfigs {
		s.log.Warn("refused config request: machine configs are not served", "from", from, "mac", r.URL.Query().Get("mac"))
		s.fail(w, "config", http.StatusNotFound, "machine configs are not served here: dodai bootstrap applies them over the Talos API (proxy mode without --serve-configs)")
		return
	}
	mac, err := macaddr.Parse(r.URL.Query().Get("mac"))
	if err != nil {
		s.fail(w, "config", http.StatusBadRequest, "mac: "+err.Error())
		return
	}
	node, known := s.reg.Node(mac)
	if !known || !s.reg.ConfigAllowed(mac, from) {
		s.log.Warn("refused config request", "mac", mac, "from", from, "known", known)
		s.fail(w, "config", http.StatusForbidden, "forbidden")
		return
	}
	b, err := s.config(node)
	if err != nil {
		s.log.Error("rendering machine config", "node", node, "err", err)
		s.fail(w, "config", http.StatusInternalServerError, "cannot render config for "+node)
		return
	}
	s.reg.Observe(mac, registry.FromHTTP, from, "", registry.StageConfig)
	s.log.Info("served machine config", "node", node, "mac", mac, "to", from)
	s.count("config", 200)
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	_, _ = w.Write(b) // a client that went away has nothing to be told
}

// setInstalled is POST /installed?mac= (boot from disk from now on) and
// POST /reinstall?mac= (netboot Talos again). Loopback only: it is an
// operator action (or dodai bootstrap's), not the machines'.
func (s *Server) setInstalled(installed bool) http.HandlerFunc {
	endpoint := "reinstall"
	if installed {
		endpoint = "installed"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if !remoteAddr(r).IsLoopback() {
			s.fail(w, endpoint, http.StatusForbidden, "only from the netboot host itself")
			return
		}
		mac, err := macaddr.Parse(r.URL.Query().Get("mac"))
		if err != nil {
			s.fail(w, endpoint, http.StatusBadRequest, "mac: "+err.Error())
			return
		}
		m := s.reg.SetInstalled(mac, installed)
		s.count(endpoint, 200)
		fmt.Fprintf(w, "%s %s\n", m.MAC, m.Stage)
	}
}
