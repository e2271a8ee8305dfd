// Package faketalos is a fake Talos node for tests. No Talos image can run
// on the test machines, so this stands in for one at the network boundary:
// it speaks the real protocol (machinery's MachineService and COSI State
// gRPC services over TLS), so dodai's real Talos client code is exercised.
//
// A node starts in maintenance mode on its maintenance address (self-signed
// certificate, no client authentication, ApplyConfiguration only, read-only
// COSI inventory). After a configuration is applied it "reboots" (stops
// listening for RebootDelay) and comes back on the address of its config,
// serving mutual TLS with the cluster's OS CA taken from the applied config
// (control planes) or, for workers, from a control plane of the same Group
// (as trustd would issue it). Bootstrap, Kubeconfig, ServiceList and
// EtcdMemberList behave like a configured node. Faults can be injected, and
// every call is recorded for assertions.
//
// Day 2 (apply.go, upgrade.go, lifecycle.go, day2.go, image.go, kube.go):
// ApplyConfiguration on a configured node with Talos' modes and dry-run
// answers, Upgrade (reboot into the new version and image, or roll back;
// on Talos 1.13 nodes also ImageService.Pull, LifecycleService.Upgrade and
// Reboot, which older nodes do not serve), the running
// MachineConfig and ExtensionStatus resources, the boot ID, and a kubelet
// (test/fakekubelet) registering the node in a real kube-apiserver.
package faketalos

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	stdx509 "crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/cosi-project/runtime/pkg/state/impl/inmem"
	"github.com/cosi-project/runtime/pkg/state/impl/namespaced"
	"github.com/cosi-project/runtime/pkg/state/protobuf/server"
	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/client-go/kubernetes"

	"github.com/dodai-dev/dodai/internal/talos/compat"
)

// DefaultPort is the Talos API port; tests normally use a dynamic one.
const DefaultPort = 50000

// Faults are injectable failures.
type Faults struct {
	// ApplyError makes every non-dry-run ApplyConfiguration fail with
	// codes.Internal and this message.
	ApplyError string
	// NeverReturn: after a successful apply (or any reboot) the node never
	// comes back.
	NeverReturn bool
	// UpgradeRollback: the image of an upgrade fails to boot and Talos
	// rolls back; the node comes back with its old version and extensions.
	UpgradeRollback bool
	// UpgradeNeverReturn: after an upgrade the node never comes back.
	UpgradeNeverReturn bool
	// InstallerExitCode, when not 0, is the exit code of the installer
	// LifecycleService.Upgrade runs (Talos 1.13+): nothing is installed.
	InstallerExitCode int32
	// BootstrapNotAvailable answers the first N Bootstrap calls with
	// FailedPrecondition "bootstrap is not available yet".
	BootstrapNotAvailable int
	// TimeNotInSync answers the first N Bootstrap calls (after
	// BootstrapNotAvailable) with FailedPrecondition "time is not in sync
	// yet"; negative: forever.
	TimeNotInSync int
}

// Options configure a fake node.
type Options struct {
	// Name is used in messages only.
	Name string
	// MaintenanceAddr is the IPv4 address (127.0.0.x) the node listens on
	// in maintenance mode.
	MaintenanceAddr string
	// Port for both phases; 0 means DefaultPort.
	Port int
	// Inventory is the scripted hardware.
	Inventory Inventory
	// RebootDelay is how long the node is away after apply.
	RebootDelay time.Duration
	// Kubeconfig is returned by the Kubeconfig API on control planes.
	Kubeconfig []byte
	// Faults to inject.
	Faults Faults
	// Group links nodes of one cluster (trustd and etcd membership).
	Group *Group
	// Kube, when set, is the cluster the node's kubelet registers in once
	// configured (see kube.go).
	Kube kubernetes.Interface
	// Factory resolves upgrade images and Inventory.Schematic to their
	// extensions (see image.go); nil knows only the vanilla installer.
	Factory *Factory
}

// Call is one recorded API call.
type Call struct {
	Method string
	Phase  string // maintenance or running
	Mode   string // apply mode
	DryRun bool
	Detail string // call-specific details (e.g. Reset's options)
	Code   codes.Code
	Time   time.Time
}

// Group is the set of fake nodes forming one cluster: workers get their
// certificate from a configured control plane (as from trustd), and etcd
// membership is shared.
type Group struct {
	mu           sync.Mutex
	nodes        []*Node
	ca           *x509.PEMEncodedCertificateAndKey
	bootstrapped *Node
	etcd         etcdModel // etcd.go
}

// NewGroup returns an empty group.
func NewGroup() *Group { return &Group{} }

func (g *Group) add(n *Node) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nodes = append(g.nodes, n)
}

func (g *Group) setCA(ca *x509.PEMEncodedCertificateAndKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ca == nil {
		g.ca = ca
	}
}

func (g *Group) getCA() *x509.PEMEncodedCertificateAndKey {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ca
}

// Bootstrapped returns the node etcd was bootstrapped on, or nil.
func (g *Group) Bootstrapped() *Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.bootstrapped
}

// BootstrapCalls sums recorded Bootstrap calls over the group.
func (g *Group) BootstrapCalls() int {
	g.mu.Lock()
	nodes := slices.Clone(g.nodes)
	g.mu.Unlock()
	total := 0
	for _, n := range nodes {
		total += n.Count("Bootstrap")
	}
	return total
}

// Node is one fake Talos machine.
type Node struct {
	opts Options

	mu        sync.Mutex
	phase     string
	addr      string
	srv       *grpc.Server
	calls     []Call
	applied   [][]byte
	cfg       config.Provider
	bootFails int
	syncFails int
	closed    bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	day2      day2
}

// Start starts a node in maintenance mode. Stop it with Close.
func Start(opts Options) (*Node, error) {
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	if opts.Inventory.TalosVersion == "" {
		opts.Inventory.TalosVersion = compat.DefaultTalosVersion
	}
	if err := checkValidator(opts.Inventory.TalosVersion); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = opts.MaintenanceAddr
	}
	if opts.Group == nil {
		opts.Group = NewGroup()
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{opts: opts, ctx: ctx, cancel: cancel}
	n.initImage()
	opts.Group.add(n)
	if err := n.serveMaintenance(); err != nil {
		cancel()
		return nil, err
	}
	return n, nil
}

// Name is the node's name from Options.
func (n *Node) Name() string { return n.opts.Name }

// Endpoint is the address:port the node currently answers on (or last did).
func (n *Node) Endpoint() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return net.JoinHostPort(n.addr, strconv.Itoa(n.opts.Port))
}

// Phase is maintenance, rebooting, running or gone.
func (n *Node) Phase() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.phase
}

// Calls returns a copy of the recorded calls.
func (n *Node) Calls() []Call {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.calls)
}

// Count returns how many calls of a method were recorded.
func (n *Node) Count(method string) int {
	c := 0
	for _, call := range n.Calls() {
		if call.Method == method {
			c++
		}
	}
	return c
}

// Applied returns the configurations applied for real (not dry runs).
func (n *Node) Applied() [][]byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.applied)
}

// Close stops the node.
func (n *Node) Close() {
	n.mu.Lock()
	n.closed = true
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	n.cancel()
	if srv != nil {
		srv.Stop()
	}
	n.wg.Wait()
	n.stopKubelet(false)
}

func (n *Node) record(c Call) {
	c.Time = time.Now()
	n.mu.Lock()
	n.calls = append(n.calls, c)
	n.mu.Unlock()
}

func (n *Node) listen(addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(n.opts.Port)))
	if err != nil {
		return nil, fmt.Errorf("fake node %s: %w", n.opts.Name, err)
	}
	return lis, nil
}

func (n *Node) serveMaintenance() error {
	ca, err := x509.NewSelfSignedCertificateAuthority(x509.ECDSA(true), x509.Organization("talos"))
	if err != nil {
		return err
	}
	ip := net.ParseIP(n.opts.MaintenanceAddr)
	kp, err := x509.NewKeyPair(ca, x509.IPAddresses([]net.IP{ip}), x509.CommonName("maintenance-service.talos.dev"),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}))
	if err != nil {
		return err
	}
	st := state.WrapCore(namespaced.NewState(inmem.Build))
	if err := n.populate(n.ctx, st, n.opts.MaintenanceAddr, runtime.MachineStageMaintenance, n.opts.Inventory.Hostname); err != nil {
		return err
	}
	lis, err := n.listen(n.opts.MaintenanceAddr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*kp.Certificate}, MinVersion: tls.VersionTLS12})))
	machineapi.RegisterMachineServiceServer(srv, &maintenanceService{n: n})
	cosiv1alpha1.RegisterStateServer(srv, server.NewState(readOnly{st}))
	n.mu.Lock()
	n.phase, n.addr, n.srv = "maintenance", n.opts.MaintenanceAddr, srv
	n.mu.Unlock()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); _ = srv.Serve(lis) }()
	return nil
}

// reboot takes the maintenance server down and brings the configured node up.
func (n *Node) reboot(cfg config.Provider) {
	defer n.wg.Done()
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.phase = "rebooting"
	n.mu.Unlock()
	if srv != nil {
		srv.GracefulStop()
	}
	select {
	case <-time.After(n.opts.RebootDelay):
	case <-n.ctx.Done():
		return
	}
	if n.faults().NeverReturn {
		n.mu.Lock()
		n.phase = "gone"
		n.mu.Unlock()
		return
	}
	if err := n.serveConfigured(cfg); err != nil {
		n.mu.Lock()
		n.phase = "failed: " + err.Error()
		n.mu.Unlock()
	}
}

// configuredAddr is the first static address of the config, else the
// maintenance address (a DHCP node keeps its lease).
func configuredAddr(cfg config.Provider, fallback string) string {
	if addrs := configuredAddrs(cfg); len(addrs) > 0 {
		return addrs[0].String()
	}
	return fallback
}

func (n *Node) serveConfigured(cfg config.Provider) error {
	isCP := cfg.Machine().Type() != machine.TypeWorker
	ca := cfg.Machine().Security().IssuingCA()
	if isCP && ca != nil && len(ca.Key) > 0 {
		n.opts.Group.setCA(ca)
	} else {
		// A worker gets its certificate from trustd on a control plane:
		// wait until one of the group is configured.
		for {
			ca = n.opts.Group.getCA()
			if ca != nil {
				break
			}
			select {
			case <-time.After(5 * time.Millisecond):
			case <-n.ctx.Done():
				return n.ctx.Err()
			}
		}
	}
	authority, err := x509.NewCertificateAuthorityFromCertificateAndKey(ca)
	if err != nil {
		return fmt.Errorf("loading OS CA: %w", err)
	}
	addr := configuredAddr(cfg, n.opts.MaintenanceAddr)
	if ip := net.ParseIP(addr); ip == nil || !ip.IsLoopback() {
		// Tests stay on loopback: never listen on a real interface's address.
		return fmt.Errorf("fake node: configured address %q is not a loopback address", addr)
	}
	kp, err := x509.NewKeyPair(authority, x509.IPAddresses([]net.IP{net.ParseIP(addr)}), x509.CommonName(addr),
		x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}))
	if err != nil {
		return fmt.Errorf("issuing server certificate: %w", err)
	}
	pool := stdx509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.Machine().Security().IssuingCA().Crt) {
		return errors.New("config has no valid machine.ca.crt")
	}
	hostname := hostnameOf(cfg)
	if hostname == "" {
		hostname = n.opts.Inventory.Hostname
	}
	st := state.WrapCore(namespaced.NewState(inmem.Build))
	if err := n.populate(n.ctx, st, addr, runtime.MachineStageRunning, hostname); err != nil {
		return err
	}
	if err := n.bootResources(n.ctx, st, cfg); err != nil {
		return err
	}
	var lis net.Listener
	for {
		// The address may still be held by a server that is shutting down.
		lis, err = n.listen(addr)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("fake node: listening on %s: %w", addr, err)
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-n.ctx.Done():
			return n.ctx.Err()
		}
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{*kp.Certificate},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	})), grpc.UnaryInterceptor(adminOnly), grpc.StreamInterceptor(adminOnlyStream))
	machineapi.RegisterMachineServiceServer(srv, &runningService{n: n, isCP: isCP})
	cosiv1alpha1.RegisterStateServer(srv, server.NewState(readOnly{st}))
	n.registerLifecycle(srv)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		lis.Close()
		return nil
	}
	n.phase, n.addr, n.srv, n.cfg = "running", addr, srv, cfg
	n.mu.Unlock()
	n.wg.Add(1)
	go func() { defer n.wg.Done(); _ = srv.Serve(lis) }()
	n.startKubelet(cfg)
	return nil
}

// adminOnly checks the client certificate's roles like apid does.
func adminOnly(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := checkAdmin(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func adminOnlyStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := checkAdmin(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

func checkAdmin(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return status.Error(codes.Unauthenticated, "no client certificate")
	}
	if !slices.Contains(ti.State.PeerCertificates[0].Subject.Organization, string(role.Admin)) {
		return status.Error(codes.PermissionDenied, "not authorized")
	}
	return nil
}

type metalMode struct{}

func (metalMode) String() string        { return "metal" }
func (metalMode) RequiresInstall() bool { return true }
func (metalMode) InContainer() bool     { return false }

// maintenanceService mirrors talos internal/app/maintenance/server.go.
type maintenanceService struct {
	machineapi.UnimplementedMachineServiceServer
	n *Node
}

func (s *maintenanceService) ApplyConfiguration(ctx context.Context, in *machineapi.ApplyConfigurationRequest) (*machineapi.ApplyConfigurationResponse, error) {
	n := s.n
	call := Call{Method: "ApplyConfiguration", Phase: "maintenance", Mode: in.Mode.String(), DryRun: in.DryRun}
	fail := func(err error) (*machineapi.ApplyConfigurationResponse, error) {
		call.Code = status.Code(err)
		n.record(call)
		return nil, err
	}
	switch in.Mode {
	case machineapi.ApplyConfigurationRequest_AUTO, machineapi.ApplyConfigurationRequest_REBOOT, machineapi.ApplyConfigurationRequest_TRY:
	default:
		return fail(status.Errorf(codes.Unimplemented, "apply configuration --mode='%s' is not supported in maintenance mode", strings.ToLower(in.Mode.String())))
	}
	cfg, err := configloader.NewFromBytes(in.Data)
	if err != nil {
		return fail(status.Errorf(codes.InvalidArgument, "failed to parse config: %v", err))
	}
	warnings, err := cfg.Validate(metalMode{})
	if err != nil {
		return fail(status.Errorf(codes.InvalidArgument, "configuration validation failed: %s", err))
	}
	if err := n.acceptConfig(ctx, in.Data); err != nil {
		return fail(err)
	}
	if cfg.Machine() == nil {
		return fail(status.Error(codes.InvalidArgument, "configuration validation failed: machine config is missing"))
	}
	if in.DryRun {
		n.record(call)
		return &machineapi.ApplyConfigurationResponse{Messages: []*machineapi.ApplyConfiguration{{
			Warnings:    warnings,
			Mode:        in.Mode,
			ModeDetails: "Dry run summary:\nNode is running in maintenance mode and does not have a config yet.",
		}}}, nil
	}
	if f := n.faults(); f.ApplyError != "" {
		return fail(status.Error(codes.Internal, f.ApplyError))
	}
	n.mu.Lock()
	n.applied = append(n.applied, slices.Clone(in.Data))
	n.mu.Unlock()
	n.record(call)
	n.wg.Add(1)
	go n.reboot(cfg)
	return &machineapi.ApplyConfigurationResponse{Messages: []*machineapi.ApplyConfiguration{{
		Warnings:    warnings,
		Mode:        machineapi.ApplyConfigurationRequest_REBOOT,
		ModeDetails: "Applied configuration with a reboot",
	}}}, nil
}

func (s *maintenanceService) Version(context.Context, *emptypb.Empty) (*machineapi.VersionResponse, error) {
	s.n.record(Call{Method: "Version", Phase: "maintenance", Code: codes.Unimplemented})
	return nil, status.Error(codes.Unimplemented, "API is not implemented in maintenance mode")
}

// runningService is the configured node's apid+machined, reduced to what
// dodai calls.
type runningService struct {
	machineapi.UnimplementedMachineServiceServer
	n    *Node
	isCP bool
}

func (s *runningService) Version(context.Context, *emptypb.Empty) (*machineapi.VersionResponse, error) {
	s.n.record(Call{Method: "Version", Phase: "running"})
	return &machineapi.VersionResponse{Messages: []*machineapi.Version{{
		Version:  &machineapi.VersionInfo{Tag: s.n.TalosVersion(), Arch: "amd64", Os: "linux"},
		Platform: &machineapi.PlatformInfo{Name: "metal", Mode: "metal"},
	}}}, nil
}

func (s *runningService) Bootstrap(_ context.Context, in *machineapi.BootstrapRequest) (*machineapi.BootstrapResponse, error) {
	n := s.n
	fail := func(err error) (*machineapi.BootstrapResponse, error) {
		n.record(Call{Method: "Bootstrap", Phase: "running", Code: status.Code(err)})
		return nil, err
	}
	if !s.isCP {
		return fail(status.Error(codes.FailedPrecondition, "bootstrap can only be performed on a control plane node"))
	}
	n.mu.Lock()
	notAvail := n.bootFails < n.opts.Faults.BootstrapNotAvailable
	if notAvail {
		n.bootFails++
	}
	var noSync bool
	if !notAvail && (n.opts.Faults.TimeNotInSync < 0 || n.syncFails < n.opts.Faults.TimeNotInSync) {
		noSync = true
		n.syncFails++
	}
	n.mu.Unlock()
	if notAvail {
		return fail(status.Error(codes.FailedPrecondition, "bootstrap is not available yet"))
	}
	if noSync {
		return fail(status.Error(codes.FailedPrecondition, "time is not in sync yet"))
	}
	if err := n.opts.Group.etcdBootstrap(n, in); err != nil {
		return fail(err)
	}
	n.record(Call{Method: "Bootstrap", Phase: "running", Detail: bootstrapDetail(in)})
	return &machineapi.BootstrapResponse{Messages: []*machineapi.Bootstrap{{}}}, nil
}

func (s *runningService) ServiceList(context.Context, *emptypb.Empty) (*machineapi.ServiceListResponse, error) {
	s.n.record(Call{Method: "ServiceList", Phase: "running"})
	now := timestamppb.Now()
	svcs := []*machineapi.ServiceInfo{
		{Id: "apid", State: "Running", Health: &machineapi.ServiceHealth{Healthy: true, LastChange: now}},
		{Id: "kubelet", State: "Running", Health: &machineapi.ServiceHealth{Healthy: true, LastChange: now}},
	}
	if s.isCP {
		svcs = append(svcs, s.n.opts.Group.etcdService(s.n, now))
	}
	return &machineapi.ServiceListResponse{Messages: []*machineapi.ServiceList{{Services: svcs}}}, nil
}

func (s *runningService) Kubeconfig(_ *emptypb.Empty, srv grpc.ServerStreamingServer[common.Data]) error {
	s.n.record(Call{Method: "Kubeconfig", Phase: "running"})
	if !s.isCP {
		return status.Error(codes.FailedPrecondition, "kubeconfig is only available on control plane nodes")
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	kc := s.n.opts.Kubeconfig
	if err := tw.WriteHeader(&tar.Header{Name: "kubeconfig", Size: int64(len(kc)), Mode: 0o600, ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write(kc); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	b := buf.Bytes()
	for len(b) > 0 {
		chunk := min(len(b), 1024)
		if err := srv.Send(&common.Data{Bytes: b[:chunk]}); err != nil {
			return err
		}
		b = b[chunk:]
	}
	return nil
}
