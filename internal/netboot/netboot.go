// Package netboot runs dodai's netboot server: it checks the inputs (Talos
// assets, iPXE binaries, the boot interface), then wires DHCP/proxyDHCP and
// the PXE boot server (internal/netboot/dhcp), TFTP for the iPXE binaries
// (internal/tftp), HTTP (internal/netboot/httpboot) and the machine
// registry (internal/netboot/registry), exposes Prometheus metrics and
// draws the live view, until its context ends.
//
// The registry and the dhcp-mode leases live in the cluster directory's
// state files, or, for `dodai netboot --in-cluster`, in a Shared store
// (the cluster's apiserver, shared by several replicas): the decisions and
// protocols are the same either way.
package netboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dodai-dev/dodai/internal/cluster"
	"github.com/dodai-dev/dodai/internal/macaddr"
	"github.com/dodai-dev/dodai/internal/netboot/dhcp"
	"github.com/dodai-dev/dodai/internal/netboot/httpboot"
	"github.com/dodai-dev/dodai/internal/netboot/ifsock"
	"github.com/dodai-dev/dodai/internal/netboot/registry"
	"github.com/dodai-dev/dodai/internal/state"
	"github.com/dodai-dev/dodai/internal/tftp"
)

// DefaultIPXEDir is where Debian's `ipxe` package installs the binaries.
const DefaultIPXEDir = "/usr/lib/ipxe"

// Options configure a netboot server. Zero values take spec.boot from the
// cluster file, then the defaults.
type Options struct {
	// ClusterDir holds cluster.yaml and the state/ directory.
	ClusterDir string
	Cluster    *cluster.Cluster
	// Interface is the boot network interface (required).
	Interface string
	// Mode is proxy or dhcp.
	Mode string
	// AssetsDir holds the Talos kernel and initramfs per arch.
	AssetsDir string
	// IPXEDir holds undionly.kpxe, snponly.efi/ipxe.efi, arm64/snp.efi.
	IPXEDir string
	// HTTPAddr is the HTTP listen address, default :8080.
	HTTPAddr string
	// OnlyKnown answers only MACs from the cluster file.
	OnlyKnown bool
	// EFIBinary is snponly.efi (default) or ipxe.efi.
	EFIBinary string
	// ServeConfigs says whether known machines get talos.config= and their
	// config over HTTP. nil: yes in dhcp mode (dodai binds the addresses it
	// trusts), no in proxy mode (the address is whatever the client claims),
	// where machines boot into maintenance mode and dodai bootstrap applies
	// their configs over the Talos API.
	ServeConfigs *bool
	// Config renders a node's machine config (needed when configs are served).
	Config httpboot.ConfigFunc
	// ConfigApplied reports when dodai bootstrap applied a node's config
	// (for boot once without config serving; nil: never).
	ConfigApplied func(node string) (time.Time, bool)
	// LeaseDurability says when a dhcp-mode lease is persisted enough for
	// its ACK (dhcp.DurableWrite or dhcp.DurableSync).
	LeaseDurability dhcp.Durability
	// NoTFTP turns the TFTP server off (firmware PXE clients then cannot
	// load iPXE from dodai; iPXE ROMs and UEFI HTTP boot still work).
	NoTFTP bool
	Log    *slog.Logger
	// View receives the live view; ViewTTY redraws a table in place,
	// otherwise a line per machine change is written.
	View    io.Writer
	ViewTTY bool
	// DHCPPort, PXEPort, TFTPPort override 67, 4011, 69 (tests and
	// benchmarks only).
	DHCPPort, PXEPort, TFTPPort int
	// Shared, when set, holds the machine registry and the dhcp-mode
	// leases instead of the cluster directory's state files (which are
	// then neither read nor written): the in-cluster boot server.
	Shared Shared
	// Lock, when set, takes the cluster directory's lock; New calls it
	// after checking its input and before it opens the machine registry
	// and the lease journal (opening the journal folds and removes the
	// journal files, which must never happen under a running server). Run
	// releases it when it returns.
	Lock func() (release func(), err error)
}

// Shared is the state an in-cluster boot server shares with the other
// replicas (internal/incluster/netbootstore implements it over the
// apiserver).
type Shared interface {
	// Machines returns every machine record, to seed the registry.
	Machines(ctx context.Context) ([]state.Machine, error)
	// MachineChanged queues a registry change for writing.
	MachineChanged(state.Machine)
	// MachineOffered queues a change seen only in this replica's DHCP
	// offer (the client may take another replica's): it is written only
	// if no other replica records the machine within a grace period.
	MachineOffered(state.Machine)
	// Owns reports whether this replica writes a change of mac that
	// every replica saw alike (in proxy mode a known machine's own
	// broadcast REQUEST, which names no boot server): the machine's last
	// writer while it runs, else one running replica chosen by the MAC;
	// the others hold it like an offer's.
	Owns(mac string) bool
	// OnRemote sets the receiver of the records other replicas (or the
	// controller) wrote; call before Run.
	OnRemote(func(state.Machine))
	// Leases returns the dhcp-mode allocator over the shared leases.
	Leases(ctx context.Context, start, end netip.Addr, reservations map[macaddr.MAC]netip.Addr) (dhcp.LeaseStore, error)
	// Run writes queued changes until ctx ends, then flushes them.
	Run(ctx context.Context)
	// Writes counts the writes sent to the store.
	Writes() int64
}

// Server is a configured netboot server.
type Server struct {
	o            Options
	log          *slog.Logger
	serverIP     netip.Addr
	baseURL      string
	serveConfigs bool
	dhcpCfg      *dhcp.Config
	leases       *dhcp.Leases // dhcp mode, file-backed
	reg          *registry.Registry
	http         *httpboot.Server
	metrics      *prometheus.Registry
	dhcpReqs     *prometheus.CounterVec
	dhcpCounters [2][16][16]atomic.Pointer[prometheus.Counter] // port, type, reply
	tftpReqs     *prometheus.CounterVec
	tftpSent     prometheus.Counter
	assets       map[string]httpboot.Assets
	ipxe         map[string]string // boot file name → the file it is served from
	view         *view
	progress     *progressLog
	unlock       func() // from Options.Lock; nil without
}

// New checks every input and builds the server; nothing listens yet.
func New(o Options) (_ *Server, err error) {
	if o.Cluster == nil {
		return nil, errors.New("netboot: no cluster")
	}
	b := o.Cluster.Spec.Boot
	if o.Interface == "" {
		o.Interface = b.Interface
	}
	if o.Mode == "" {
		o.Mode = b.Mode
	}
	if o.Mode == "" {
		o.Mode = dhcp.ModeProxy
	}
	o.OnlyKnown = o.OnlyKnown || b.OnlyKnown
	if o.IPXEDir == "" {
		o.IPXEDir = DefaultIPXEDir
	}
	if o.AssetsDir == "" {
		o.AssetsDir = cluster.At(o.ClusterDir).Assets()
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = ":8080"
	}
	if o.EFIBinary == "" {
		o.EFIBinary = dhcp.FileSNPOnly
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Interface == "" {
		return nil, errors.New("no boot interface: pass --interface or set spec.boot.interface")
	}
	if o.Mode != dhcp.ModeProxy && o.Mode != dhcp.ModeDHCP {
		return nil, fmt.Errorf("--mode must be proxy or dhcp, got %q", o.Mode)
	}
	if o.EFIBinary != dhcp.FileSNPOnly && o.EFIBinary != dhcp.FileIPXEEFI {
		return nil, fmt.Errorf("--efi-binary must be %s or %s, got %q", dhcp.FileSNPOnly, dhcp.FileIPXEEFI, o.EFIBinary)
	}
	s := &Server{o: o, log: o.Log, serveConfigs: o.Mode == dhcp.ModeDHCP}
	if o.ServeConfigs != nil {
		s.serveConfigs = *o.ServeConfigs
	}
	if s.serveConfigs && o.Config == nil {
		return nil, errors.New("netboot: no machine config renderer")
	}

	ip, err := interfaceIPv4(o.Interface, b.ServerAddress)
	if err != nil {
		return nil, err
	}
	s.serverIP = ip
	_, port, err := net.SplitHostPort(o.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("--http-addr %q: %w", o.HTTPAddr, err)
	}
	if port == "0" && o.HTTPAddr != "" {
		return nil, fmt.Errorf("--http-addr %q: the port must be fixed (machines are told the URL)", o.HTTPAddr)
	}
	s.baseURL = "http://" + net.JoinHostPort(ip.String(), port)

	arch := o.Cluster.Spec.Image.Arch
	if arch == "" {
		arch = "amd64"
	}
	if s.assets, err = findAssets(o.AssetsDir, arch); err != nil {
		return nil, err
	}
	if s.ipxe, err = findIPXE(o.IPXEDir, arch, o.EFIBinary); err != nil {
		return nil, err
	}
	_, haveARM64 := s.ipxe[dhcp.FileARM64SNP]

	known := map[macaddr.MAC]string{}
	for _, n := range o.Cluster.Spec.Nodes {
		for _, m := range n.MACs {
			if mac, err := macaddr.Parse(m); err == nil {
				known[mac] = n.Name
			}
		}
	}

	s.metrics = prometheus.NewRegistry()
	s.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.dhcpReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dodai_netboot_dhcp_requests_total", Help: "DHCP requests by port, message type and reply (none when ignored)."}, []string{"port", "type", "reply"})
	s.tftpReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dodai_netboot_tftp_transfers_total", Help: "TFTP transfers by file and result."}, []string{"file", "result"})
	s.tftpSent = prometheus.NewCounter(prometheus.CounterOpts{Name: "dodai_netboot_tftp_sent_bytes_total", Help: "Bytes sent over TFTP."})
	s.metrics.MustRegister(s.dhcpReqs, s.tftpReqs, s.tftpSent)

	s.view = newView(o.View, o.ViewTTY)
	s.progress = &progressLog{}
	if o.Lock != nil {
		if s.unlock, err = o.Lock(); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				s.unlock()
			}
		}()
	}
	ropts := registry.Options{Path: cluster.At(o.ClusterDir).MachinesState(), Known: known, ConfigApplied: o.ConfigApplied,
		OnChange: s.machineChanged}
	if o.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if ropts.Seed, err = o.Shared.Machines(ctx); err != nil {
			return nil, fmt.Errorf("reading the shared machine registry: %w", err)
		}
		ropts.Path = ""
		ropts.OnChange = func(m state.Machine) {
			s.machineChanged(m)
			o.Shared.MachineChanged(m)
		}
	}
	s.reg, err = registry.New(ropts)
	if err != nil {
		return nil, err
	}
	if o.Shared != nil {
		o.Shared.OnRemote(func(m state.Machine) {
			if merged, changed := s.reg.Merge(m); changed {
				s.view.changed(merged)
			}
		})
		s.metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dodai_netboot_store_writes_total",
			Help: "Writes this boot server sent to the shared store (apiserver): leases and machine records."},
			func() float64 { return float64(o.Shared.Writes()) }))
	}
	s.metrics.MustRegister(&stageCollector{reg: s.reg, desc: prometheus.NewDesc("dodai_netboot_machines", "Machines seen, by boot stage.", []string{"stage"}, nil)})

	s.dhcpCfg = &dhcp.Config{Mode: o.Mode, ServerIP: ip, HTTPURL: s.baseURL, EFIBinary: o.EFIBinary,
		Known: s.reg.Known, OnlyKnown: o.OnlyKnown, NoARM64: !haveARM64}
	if o.Mode == dhcp.ModeDHCP {
		if err := s.setupDHCPMode(); err != nil {
			return nil, err
		}
	}
	s.http, err = httpboot.New(httpboot.Options{BaseURL: s.baseURL, Assets: s.assets, IPXEFiles: s.ipxe,
		ExtraKernelArgs: o.Cluster.Spec.Image.ExtraKernelArgs, Registry: s.reg, ServeConfigs: s.serveConfigs, Config: o.Config, Log: o.Log, Metrics: s.metrics})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) setupDHCPMode() error {
	b := s.o.Cluster.Spec.Boot
	subnet, err := netip.ParsePrefix(b.Subnet)
	if err != nil || !subnet.Addr().Is4() {
		return fmt.Errorf("dhcp mode needs spec.boot.subnet (IPv4 CIDR), got %q", b.Subnet)
	}
	subnet = subnet.Masked()
	if b.Range == nil {
		return errors.New("dhcp mode needs spec.boot.range")
	}
	start, err1 := netip.ParseAddr(b.Range.Start)
	end, err2 := netip.ParseAddr(b.Range.End)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("spec.boot.range %s-%s is not an address range", b.Range.Start, b.Range.End)
	}
	if !subnet.Contains(s.serverIP) {
		return fmt.Errorf("the server address %s (interface %s) is not in spec.boot.subnet %s", s.serverIP, s.o.Interface, subnet)
	}
	lt := time.Hour
	if b.LeaseTime != "" {
		if lt, err = time.ParseDuration(b.LeaseTime); err != nil {
			return fmt.Errorf("spec.boot.leaseTime: %w", err)
		}
	}
	res := map[macaddr.MAC]netip.Addr{}
	for _, n := range s.o.Cluster.Spec.Nodes {
		if n.Address == "" || len(n.MACs) == 0 {
			continue
		}
		p, err := netip.ParsePrefix(n.Address)
		if err != nil || !subnet.Contains(p.Addr()) {
			continue // static address on another network: no reservation here
		}
		if m, err := macaddr.Parse(AddressMAC(n)); err == nil {
			res[m] = p.Addr()
		}
	}
	if s.o.Shared != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if s.dhcpCfg.Leases, err = s.o.Shared.Leases(ctx, start, end, res); err != nil {
			return fmt.Errorf("the shared dhcp-mode leases: %w", err)
		}
	} else {
		leases, err := dhcp.NewLeases(dhcp.LeaseOptions{Path: cluster.At(s.o.ClusterDir).Leases(), Durability: s.o.LeaseDurability,
			Start: start, End: end, Reservations: res})
		if err != nil {
			return err
		}
		s.metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "dodai_netboot_lease_journal_syncs_total",
			Help: "fdatasyncs of the dhcp-mode lease journal (with --lease-durability sync, one per group of ACKs)."},
			func() float64 { return float64(leases.Syncs()) }))
		s.leases = leases
		s.dhcpCfg.Leases = leases
	}
	s.dhcpCfg.Subnet, s.dhcpCfg.LeaseTime = subnet, lt
	if b.Router != "" {
		s.dhcpCfg.Router, _ = netip.ParseAddr(b.Router)
	}
	for _, d := range b.DNS {
		if a, err := netip.ParseAddr(d); err == nil {
			s.dhcpCfg.DNS = append(s.dhcpCfg.DNS, a)
		}
	}
	return nil
}

// BaseURL is the HTTP base URL machines are given.
func (s *Server) BaseURL() string { return s.baseURL }

// ServerIP is the server's address on the boot network.
func (s *Server) ServerIP() netip.Addr { return s.serverIP }

// Mode is the DHCP mode the server runs in (proxy or dhcp).
func (s *Server) Mode() string { return s.o.Mode }

// Registry exposes the machine registry.
func (s *Server) Registry() *registry.Registry { return s.reg }

// tftpDone records a finished TFTP transfer for the metrics (the TFTP
// server logs transfers itself). A transfer the client stopped, e.g. UEFI's
// size probe, counts as "aborted", not as an error.
func (s *Server) tftpDone(ev tftp.TransferEvent) {
	result := "ok"
	switch {
	case errors.Is(ev.Err, tftp.ErrClientAbort):
		result = "aborted"
	case ev.Err != nil:
		result = "error"
	}
	file := strings.TrimLeft(ev.File, "/")
	if _, ok := s.ipxe[file]; !ok {
		file = "other" // client-chosen names must not create metric series
	}
	s.tftpReqs.WithLabelValues(file, result).Inc()
	s.tftpSent.Add(float64(ev.Bytes))
}

// machineChanged is the registry's change hook: a debug line per change
// (the aggregate info line is written once a second), the live view.
func (s *Server) machineChanged(m state.Machine) {
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("machine", "mac", m.MAC, "node", m.Node, "arch", m.Arch, "ip", m.IP, "stage", m.Stage)
	}
	s.progress.changed(m)
	s.view.changed(m)
}

func (s *Server) onDHCP(ev dhcp.Event) {
	s.dhcpCounter(ev).Inc()
	if ev.Reply == 0 || ev.Reply == dhcpv4.MessageTypeNak {
		if ev.IP.IsValid() && ev.Type == dhcpv4.MessageTypeRequest && s.o.Mode == dhcp.ModeProxy && s.reg.Known(ev.Client.MAC) {
			// proxy mode: a known machine's own REQUEST to the site
			// server tells which address it is taking (e.g. Talos' DHCP).
			// Every in-cluster replica sees the broadcast: one writes
			// it (Shared.Owns), the others hold it.
			if s.o.Shared == nil || s.o.Shared.Owns(ev.Client.MAC.String()) {
				s.reg.Observe(ev.Client.MAC, registry.FromDHCP, ev.IP, "", "")
			} else if m, changed := s.reg.Hold(ev.Client.MAC, registry.FromDHCP, ev.IP, "", ""); changed {
				s.machineChanged(m)
				s.o.Shared.MachineOffered(m)
			}
		}
		return
	}
	var stage registry.Stage
	if ev.Boot.File != "" {
		stage = ev.Boot.Stage
	}
	ip := ev.IP
	if s.o.Mode == dhcp.ModeDHCP && ev.Reply == dhcpv4.MessageTypeOffer {
		ip = netip.Addr{} // not bound yet
	}
	if s.o.Shared != nil && (ev.Reply == dhcpv4.MessageTypeOffer || (s.o.Mode == dhcp.ModeProxy && ev.Port == dhcp.PortDHCP)) {
		// Every replica offers; the client takes one offer, and only the
		// replica it then asks (REQUEST with its server identifier)
		// records the machine. An offer's change is held: it goes out
		// with this replica's next observation of the machine, or, if no
		// replica records the machine at all, after the store's grace
		// period. In proxy mode every replica also answers the broadcast
		// REQUEST (it names the site's server, not one of us): held the
		// same way, it goes out with the PXE REQUEST on port 4011 or the
		// HTTP fetch that only the replica the client chose sees.
		if m, changed := s.reg.Hold(ev.Client.MAC, registry.FromDHCP, ip, ev.Client.ArchName(), stage); changed {
			s.machineChanged(m)
			s.o.Shared.MachineOffered(m)
		}
		return
	}
	s.reg.Observe(ev.Client.MAC, registry.FromDHCP, ip, ev.Client.ArchName(), stage)
}

// dhcpCounter returns the request counter of an event's port, type and
// reply, resolving the label values once per combination instead of per
// packet.
func (s *Server) dhcpCounter(ev dhcp.Event) prometheus.Counter {
	pi := 0
	if ev.Port == dhcp.PortPXE {
		pi = 1
	}
	t, r := int(ev.Type), int(ev.Reply)
	if t >= len(s.dhcpCounters[0]) || r >= len(s.dhcpCounters[0][0]) {
		return s.dhcpReqs.WithLabelValues(strconv.Itoa(int(ev.Port)), ev.Type.String(), ev.Reply.String())
	}
	slot := &s.dhcpCounters[pi][t][r]
	if c := slot.Load(); c != nil {
		return *c
	}
	reply := "none"
	if ev.Reply != 0 {
		reply = ev.Reply.String()
	}
	c := s.dhcpReqs.WithLabelValues(strconv.Itoa(int(ev.Port)), ev.Type.String(), reply)
	slot.Store(&c)
	return c
}

// Run listens and serves until ctx ends, then shuts down cleanly.
func (s *Server) Run(ctx context.Context) error {
	if s.unlock != nil {
		defer s.unlock()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &dhcp.Server{Config: s.dhcpCfg, Interface: s.o.Interface, Log: s.log, DHCPPort: s.o.DHCPPort, PXEPort: s.o.PXEPort, OnEvent: s.onDHCP}
	dconn, pconn, err := srv.Listen()
	if err != nil {
		return fmt.Errorf("%w (port 67 needs root or CAP_NET_BIND_SERVICE; is another DHCP server running?)", err)
	}
	ln, err := net.Listen("tcp", s.o.HTTPAddr)
	if err != nil {
		dconn.Close()
		if pconn != nil {
			pconn.Close()
		}
		return fmt.Errorf("listening for HTTP on %s: %w", s.o.HTTPAddr, err)
	}
	var tconn net.PacketConn
	var tsrv *tftp.Server
	if !s.o.NoTFTP {
		tp := s.o.TFTPPort
		if tp == 0 {
			tp = 69
		}
		tsrv = &tftp.Server{Files: s.ipxe, Log: s.log, OnTransfer: s.tftpDone}
		tconn, err = ifsock.ListenUDP(ctx, s.o.Interface, tp, false)
		if err != nil {
			dconn.Close()
			ln.Close()
			if pconn != nil {
				pconn.Close()
			}
			return fmt.Errorf("listening for TFTP on %s port %d: %w", s.o.Interface, tp, err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}))
	mux.Handle("/", s.http.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	s.log.Info("netboot server running", "interface", s.o.Interface, "mode", s.o.Mode, "server", s.serverIP,
		"http", s.baseURL, "tftp", tconn != nil, "assets", s.o.AssetsDir, "ipxe", s.o.IPXEDir, "onlyKnown", s.o.OnlyKnown, "serveConfigs", s.serveConfigs, "sharedState", s.o.Shared != nil)
	s.logConfigServing()
	if tconn == nil {
		s.log.Warn("TFTP is off (--no-tftp): firmware PXE clients cannot load iPXE from dodai (iPXE ROMs and UEFI HTTP boot still work)")
	}

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	// The shared store's writer outlives the servers: it flushes what they
	// queued once they stopped.
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStore()
	storeDone := make(chan struct{})
	if sh := s.o.Shared; sh != nil {
		go func() { defer close(storeDone); sh.Run(storeCtx) }()
	} else {
		close(storeDone)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ctx, dconn, pconn); err != nil {
			errc <- fmt.Errorf("DHCP: %w", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP: %w", err)
		}
	}()
	if tconn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tsrv.Serve(ctx, tconn); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("TFTP: %w", err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var nextSave time.Time
		for n := 1; ; n++ {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				// machines.json is rewritten whole; with many machines that
				// is not free, so at most 2% of the time goes to it.
				if !now.Before(nextSave) {
					if err := s.reg.Save(); err != nil {
						s.log.Error("saving machine registry", "err", err)
					}
					nextSave = now.Add(50 * time.Since(now))
				}
				if l := s.leases; l != nil {
					if err := l.Sync(); err != nil {
						s.log.Error("syncing lease journal", "err", err)
					}
					if n%60 == 0 {
						if err := l.Compact(); err != nil {
							s.log.Error("compacting leases", "err", err)
						}
					}
				}
				s.view.redraw(s.reg.List)
				s.progress.flush(s.log, s.reg.Len)
			}
		}
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = hs.Shutdown(shutdownCtx)
	if tconn != nil {
		tconn.Close()
	}
	wg.Wait()
	stopStore()
	<-storeDone
	if err := s.reg.Save(); err != nil && runErr == nil {
		runErr = err
	}
	if l := s.leases; l != nil {
		if err := l.Close(); err != nil && runErr == nil {
			runErr = err
		}
	}
	s.log.Info("netboot server stopped")
	return runErr
}

// interfaceIPv4 returns the address to announce: spec.boot.serverAddress
// if set (it must be on the interface), else the interface's first IPv4.
func interfaceIPv4(name, want string) (netip.Addr, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("boot interface %q not found (see `ip link`)", name)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("boot interface %q: %w", name, err)
	}
	var first netip.Addr
	for _, a := range addrs {
		pfx, err := netip.ParsePrefix(a.String())
		if err != nil || !pfx.Addr().Is4() {
			continue
		}
		if want != "" && pfx.Addr().String() == want {
			return pfx.Addr(), nil
		}
		if !first.IsValid() {
			first = pfx.Addr()
		}
	}
	if want != "" {
		return netip.Addr{}, fmt.Errorf("spec.boot.serverAddress %s is not an address of interface %s", want, name)
	}
	if !first.IsValid() {
		return netip.Addr{}, fmt.Errorf("boot interface %s has no IPv4 address: give it one (e.g. ip addr add 192.168.100.1/24 dev %s)", name, name)
	}
	return first, nil
}

// findAssets locates the Talos kernel and initramfs of arch (required) and
// of the other architecture (optional). Accepted layouts: DIR/<arch>/vmlinuz
// + initramfs.xz, or the imager's DIR/kernel-<arch> (or vmlinuz-<arch>) +
// DIR/initramfs-<arch>.xz.
func findAssets(dir, arch string) (map[string]httpboot.Assets, error) {
	out := map[string]httpboot.Assets{}
	for _, a := range []string{"amd64", "arm64"} {
		k := firstFile(filepath.Join(dir, a, "vmlinuz"), filepath.Join(dir, "kernel-"+a), filepath.Join(dir, "vmlinuz-"+a))
		i := firstFile(filepath.Join(dir, a, "initramfs.xz"), filepath.Join(dir, "initramfs-"+a+".xz"))
		switch {
		case k != "" && i != "":
			out[a] = httpboot.Assets{Kernel: k, Initramfs: i}
		case a != arch:
		case k == "":
			return nil, fmt.Errorf("no Talos kernel for %s in %s: looked for %s/vmlinuz, kernel-%s and vmlinuz-%s (build them with the Talos imager's kernel output, or pass --assets)", a, dir, a, a, a)
		default:
			return nil, fmt.Errorf("no Talos initramfs for %s in %s: looked for %s/initramfs.xz and initramfs-%s.xz (the imager's initramfs output; or pass --assets)", a, dir, a, a)
		}
	}
	return out, nil
}

// findIPXE checks the iPXE binaries needed for arch and returns every
// servable one found, by the name machines ask for, with the file it is
// served from. The operator chose the directory, so symlinks in it are
// followed here, once: Debian's /usr/lib/ipxe/ipxe.efi is an absolute
// symlink to /boot/ipxe.efi. TFTP and HTTP then serve exactly these files
// and no other name.
func findIPXE(dir, arch, efi string) (map[string]string, error) {
	need := map[string]bool{}
	if arch == "amd64" {
		need[dhcp.FileUndionly], need[efi] = true, true
	} else {
		need[dhcp.FileARM64SNP] = true
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("iPXE directory %s not found: install the Debian package ipxe (apt-get install ipxe) or pass --ipxe-dir", dir)
	}
	found := map[string]string{}
	var missing, problems []string
	for _, f := range []string{dhcp.FileUndionly, dhcp.FileSNPOnly, dhcp.FileIPXEEFI, dhcp.FileARM64SNP} {
		path, problem := resolveBootFile(dir, f)
		switch {
		case problem == "":
			found[f] = path
		case !need[f]:
		case problem == "missing":
			missing = append(missing, f)
		default:
			problems = append(problems, problem)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("iPXE binaries in %s cannot be served: %s", dir, strings.Join(problems, "; "))
	}
	if len(missing) > 0 {
		hint := "install the Debian package ipxe (apt-get install ipxe) or pass --ipxe-dir"
		if arch == "arm64" {
			hint = "Debian's ipxe package has no arm64 build: put an arm64 snp.efi (https://boot.ipxe.org/arm64-efi/snp.efi) at " + filepath.Join(dir, "arm64", "snp.efi")
		}
		return nil, fmt.Errorf("missing iPXE binaries in %s: %s: %s", dir, strings.Join(missing, ", "), hint)
	}
	return found, nil
}

// resolveBootFile follows the symlinks of dir/name to a regular file. The
// problem is "missing" when nothing is there, else a sentence saying what
// is wrong and what to do.
func resolveBootFile(dir, name string) (path, problem string) {
	p := filepath.Join(dir, filepath.FromSlash(name))
	if _, err := os.Lstat(p); err != nil {
		return "", "missing"
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		target, _ := os.Readlink(p)
		return "", fmt.Sprintf("%s is a symlink to %s, which does not exist (reinstall the package that owns it, e.g. apt-get install --reinstall ipxe, or pass --ipxe-dir with a directory that has %s)", p, target, name)
	}
	st, err := os.Stat(resolved)
	switch {
	case err != nil:
		return "", fmt.Sprintf("%s: %v", p, err)
	case !st.Mode().IsRegular():
		return "", fmt.Sprintf("%s is not a regular file (%s)", p, resolved)
	}
	f, err := os.Open(resolved)
	if err != nil {
		return "", fmt.Sprintf("%s cannot be read (%v): dodai netboot needs read access to it", p, err)
	}
	f.Close()
	return resolved, ""
}

func firstFile(paths ...string) string {
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

type stageCollector struct {
	reg  *registry.Registry
	desc *prometheus.Desc
}

func (c *stageCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *stageCollector) Collect(ch chan<- prometheus.Metric) {
	counts := c.reg.CountByStage()
	for _, st := range registry.Stages {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
}

// logConfigServing says at startup whether machine configs go over HTTP
// and, in proxy mode, what that risks.
func (s *Server) logConfigServing() {
	switch {
	case s.serveConfigs && s.o.Mode == dhcp.ModeProxy:
		s.log.Warn("--serve-configs in proxy mode: machine configs hold the cluster's secrets (CA keys, tokens), and in proxy mode dodai " +
			"cannot check who holds an address: any host on the boot network that knows a node's MAC can claim that node's address in a " +
			"DHCP REQUEST and then fetch its config. Use it only on a boot network where every host is trusted, and stop netboot once the nodes are installed.")
	case !s.serveConfigs && s.o.Mode == dhcp.ModeProxy:
		s.log.Info("machine configs are not served over HTTP (proxy mode): known machines boot into Talos maintenance mode and " +
			"`dodai bootstrap` applies their configs over the Talos API (--serve-configs serves them over HTTP instead)")
	case !s.serveConfigs:
		s.log.Info("machine configs are not served over HTTP (--serve-configs=false): machines boot into Talos maintenance mode; " +
			"`dodai bootstrap` applies their configs over the Talos API")
	}
}
