package faketalos

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The etcd membership of a Group. Every configured control-plane node of a
// group runs one member of one shared etcd cluster; the model keeps the
// members (ID, name, leader, alarms, down or healthy), bootstraps and
// recovers the cluster, lets nodes join, leave and be removed by ID, and
// answers machinery's etcd RPCs the way Talos does (control planes only;
// membership changes need a healthy quorum and, as etcd's strict
// reconfiguration check, must leave one). Data goes to a real etcd when the
// group has an EtcdBackend: snapshots are streamed from it and recoveries
// restore it, so the snapshot files are real etcd snapshots.
//
// Simplifications: a Bootstrap on a node that is not a member while the
// group already has a cluster answers AlreadyExists (a real node would start
// a second cluster, which dodai never asks for); Reset's etcd leave runs
// synchronously and its refusal is the Reset's error.

// EtcdBackend is the real etcd behind a group's members.
type EtcdBackend struct {
	// Endpoint is the real etcd's client URL (http://127.0.0.1:PORT).
	// EtcdSnapshot streams its snapshot; EtcdStatus reports its DB size and
	// raft index.
	Endpoint string
	// Restore replaces the real etcd's data with the snapshot file (what
	// Talos' recover-from bootstrap does on the node). It must verify the
	// snapshot's hash unless skipHashCheck.
	Restore func(ctx context.Context, snapshotPath string, skipHashCheck bool) error
}

// EtcdFaults are injectable etcd failures of one node.
type EtcdFaults struct {
	// SnapshotCorrupt flips a byte in the middle of the snapshot stream.
	SnapshotCorrupt bool
	// SnapshotTruncate ends the snapshot stream (without an error) after
	// this many bytes; 0: never.
	SnapshotTruncate int
	// SnapshotError fails the stream with this message after the first
	// chunk.
	SnapshotError string
}

// EtcdMember is one member as the model sees it (for assertions).
type EtcdMember struct {
	ID      uint64
	Name    string
	Node    string // fake node name ("" when the machine no longer has it)
	Leader  bool
	Healthy bool
	Alarms  []string
}

// EtcdEvent is one membership change, in order.
type EtcdEvent struct {
	Kind   string // bootstrap, recover, join, leave, remove, forfeit
	Member string // member name
	ID     uint64
	Via    string // node that served the call
	Time   time.Time
}

type etcdMember struct {
	id     uint64
	name   string
	node   *Node // nil once the machine lost its data (reset) or was removed
	addr   string
	down   bool
	alarms []machineapi.EtcdMemberAlarm_AlarmType
}

type etcdModel struct {
	mu        sync.Mutex
	members   []*etcdMember
	leader    uint64
	seq       uint64
	backend   *EtcdBackend
	joinDelay time.Duration
	waiting   map[*Node]time.Time // CP nodes waiting to join, since
	left      map[*Node]bool      // etcd stopped after leave/remove until the node reboots
	faults    map[*Node]EtcdFaults
	uploaded  map[*Node][]byte // EtcdRecover uploads
	// recoverErr is why the last recovery failed (after its call returned).
	recoverErr error
	events     []EtcdEvent
}

// SetEtcdBackend connects the group's members to a real etcd.
func (g *Group) SetEtcdBackend(b EtcdBackend) {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	m.backend = &b
}

// SetEtcdJoinDelay makes configured control planes wait this long before
// joining the cluster (default: at once).
func (g *Group) SetEtcdJoinDelay(d time.Duration) {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	m.joinDelay = d
}

// SetEtcdFaults injects etcd failures on one node.
func (g *Group) SetEtcdFaults(n *Node, f EtcdFaults) {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.faults == nil {
		m.faults = map[*Node]EtcdFaults{}
	}
	m.faults[n] = f
}

// SetEtcdDown marks the etcd member of a node down (its etcd stops
// answering; the node itself still does) or back up.
func (g *Group) SetEtcdDown(n *Node, down bool) {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mb := range m.members {
		if mb.node == n {
			mb.down = down
		}
	}
	m.electLocked()
}

// SetEtcdAlarm raises an alarm (NOSPACE or CORRUPT) on a node's member.
func (g *Group) SetEtcdAlarm(n *Node, alarm string) {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	a := machineapi.EtcdMemberAlarm_AlarmType(machineapi.EtcdMemberAlarm_AlarmType_value[alarm])
	for _, mb := range m.members {
		if mb.node == n && !slices.Contains(mb.alarms, a) {
			mb.alarms = append(mb.alarms, a)
		}
	}
}

// EtcdMembers returns the current members (after letting waiting nodes join).
func (g *Group) EtcdMembers() []EtcdMember {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	m.syncLocked(g)
	out := make([]EtcdMember, 0, len(m.members))
	for _, mb := range m.members {
		e := EtcdMember{ID: mb.id, Name: mb.name, Leader: mb.id == m.leader, Healthy: mb.healthy()}
		if mb.node != nil {
			e.Node = mb.node.Name()
		}
		for _, a := range mb.alarms {
			e.Alarms = append(e.Alarms, a.String())
		}
		out = append(out, e)
	}
	return out
}

// EtcdRecoverError is why the last recover-from bootstrap failed after
// the call returned (the restore runs in the background), or nil.
func (g *Group) EtcdRecoverError() error {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recoverErr
}

// EtcdEvents returns the membership changes so far.
func (g *Group) EtcdEvents() []EtcdEvent {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.events)
}

// healthy: the member's machine runs it and it answers.
func (mb *etcdMember) healthy() bool {
	if mb.down || mb.node == nil {
		return false
	}
	mb.node.mu.Lock()
	defer mb.node.mu.Unlock()
	return mb.node.phase == "running" && !mb.node.closed
}

func (m *etcdModel) memberOf(n *Node) *etcdMember {
	for _, mb := range m.members {
		if mb.node == n {
			return mb
		}
	}
	return nil
}

func (m *etcdModel) byID(id uint64) *etcdMember {
	for _, mb := range m.members {
		if mb.id == id {
			return mb
		}
	}
	return nil
}

func (m *etcdModel) healthyCount() int {
	c := 0
	for _, mb := range m.members {
		if mb.healthy() {
			c++
		}
	}
	return c
}

func (m *etcdModel) quorumLocked() bool {
	return len(m.members) > 0 && 2*m.healthyCount() > len(m.members)
}

// electLocked keeps a healthy leader while there is quorum.
func (m *etcdModel) electLocked() {
	if !m.quorumLocked() {
		m.leader = 0
		return
	}
	if l := m.byID(m.leader); l != nil && l.healthy() {
		return
	}
	for _, mb := range m.members {
		if mb.healthy() {
			m.leader = mb.id
			return
		}
	}
}

func (m *etcdModel) newID(name string) uint64 {
	m.seq++
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", name, m.seq)
	return h.Sum64() | 1<<63
}

func (m *etcdModel) event(kind string, mb *etcdMember, via *Node) {
	e := EtcdEvent{Kind: kind, Member: mb.name, ID: mb.id, Time: time.Now()}
	if via != nil {
		e.Via = via.Name()
	}
	m.events = append(m.events, e)
}

// nodeFacts reads what the model needs from a node.
func nodeFacts(n *Node) (running, cp bool, name, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	running = n.phase == "running" && !n.closed && n.cfg != nil
	if n.cfg != nil && n.cfg.Machine() != nil {
		cp = n.cfg.Machine().Type() != machine.TypeWorker
		name = hostnameOf(n.cfg)
	}
	if name == "" {
		name = n.opts.Name
	}
	return running, cp, name, n.addr
}

// syncLocked forgets a cluster no machine holds any more, and lets
// configured control planes without data join a cluster that has quorum
// (Talos joins them by itself), replacing a stale member of the same name.
func (m *etcdModel) syncLocked(g *Group) {
	if len(m.members) > 0 && !slices.ContainsFunc(m.members, func(mb *etcdMember) bool { return mb.node != nil }) {
		m.members, m.leader = nil, 0
	}
	m.electLocked()
	if !m.quorumLocked() {
		return
	}
	g.mu.Lock()
	nodes := slices.Clone(g.nodes)
	g.mu.Unlock()
	now := time.Now()
	for _, n := range nodes {
		running, cp, name, addr := nodeFacts(n)
		if !running || !cp || m.memberOf(n) != nil || m.left[n] {
			delete(m.waiting, n)
			continue
		}
		if m.waiting == nil {
			m.waiting = map[*Node]time.Time{}
		}
		since, ok := m.waiting[n]
		if !ok {
			m.waiting[n], since = now, now
		}
		if now.Sub(since) < m.joinDelay {
			continue
		}
		delete(m.waiting, n)
		m.members = slices.DeleteFunc(m.members, func(mb *etcdMember) bool { return mb.name == name && mb.node == nil })
		mb := &etcdMember{id: m.newID(name), name: name, node: n, addr: addr}
		m.members = append(m.members, mb)
		m.event("join", mb, nil)
	}
	m.electLocked()
}

// lock takes the model's lock after letting waiting nodes join.
func (g *Group) lockEtcd() *etcdModel {
	m := &g.etcd
	m.mu.Lock()
	m.syncLocked(g)
	return m
}

// reconfigOK is etcd's strict reconfiguration check for removing mb: the
// remaining healthy members must still be a majority of the remaining ones.
func (m *etcdModel) reconfigOK(mb *etcdMember) error {
	if !m.quorumLocked() {
		return status.Error(codes.Unavailable, "etcdserver: no leader")
	}
	rest := len(m.members) - 1
	if rest == 0 {
		return status.Error(codes.FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
	}
	healthy := m.healthyCount()
	if mb.healthy() {
		healthy--
	}
	if 2*healthy <= rest {
		return status.Error(codes.FailedPrecondition, "etcdserver: unhealthy cluster")
	}
	return nil
}

func (m *etcdModel) removeLocked(mb *etcdMember, kind string, via *Node) {
	m.members = slices.DeleteFunc(m.members, func(x *etcdMember) bool { return x == mb })
	if mb.node != nil {
		if m.left == nil {
			m.left = map[*Node]bool{}
		}
		m.left[mb.node] = true // its etcd stops; it rejoins only after a reboot
	}
	m.event(kind, mb, via)
	m.electLocked()
}

// nodeRebooted is called when a node comes back: a node that left can join
// again, and one whose EPHEMERAL partition was wiped lost its data.
func (g *Group) nodeRebooted(n *Node, wipedEphemeral bool) {
	m := &g.etcd
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.left, n)
	if wipedEphemeral {
		if mb := m.memberOf(n); mb != nil {
			mb.node = nil // a stale member: its machine no longer has the data
		}
		delete(m.uploaded, n)
	}
	m.electLocked()
}

func bootstrapDetail(in *machineapi.BootstrapRequest) string {
	if in.GetRecoverEtcd() {
		return fmt.Sprintf("recover_etcd=true recover_skip_hash_check=%v", in.GetRecoverSkipHashCheck())
	}
	return ""
}

// etcdBootstrap starts the cluster on n, from the uploaded snapshot when
// recovering.
func (g *Group) etcdBootstrap(n *Node, in *machineapi.BootstrapRequest) error {
	m := g.lockEtcd()
	defer m.mu.Unlock()
	if m.memberOf(n) != nil || (len(m.members) > 0 && !in.GetRecoverEtcd()) {
		return status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}
	if len(m.members) > 0 {
		return status.Error(codes.FailedPrecondition, "etcd data directory is not empty: the cluster still has members elsewhere")
	}
	kind := "bootstrap"
	var snap []byte
	if in.GetRecoverEtcd() {
		kind = "recover"
		if snap = m.uploaded[n]; snap == nil {
			return status.Error(codes.FailedPrecondition, "error recovering from the snapshot: no snapshot was uploaded (EtcdRecover)")
		}
		delete(m.uploaded, n)
	}
	_, _, name, addr := nodeFacts(n)
	mb := &etcdMember{id: m.newID(name), name: name, node: n, addr: addr}
	m.members = []*etcdMember{mb}
	m.leader = mb.id
	delete(m.left, n)
	m.event(kind, mb, n)
	if snap != nil {
		// As on Talos, the call returns and etcd starts from the snapshot
		// in the background: the member is down until the restore is done.
		mb.down = true
		m.electLocked()
		skip := in.GetRecoverSkipHashCheck()
		go func() {
			err := m.restore(snap, skip)
			m.mu.Lock()
			defer m.mu.Unlock()
			if err != nil {
				m.members = slices.DeleteFunc(m.members, func(x *etcdMember) bool { return x == mb })
				m.recoverErr = fmt.Errorf("error recovering from the snapshot: %w", err)
			} else {
				mb.down = false
			}
			m.electLocked()
		}()
	}
	g.mu.Lock()
	if g.bootstrapped == nil || kind == "recover" {
		g.bootstrapped = n
	}
	g.mu.Unlock()
	return nil
}

// restore hands the uploaded snapshot to the real etcd, or (without a
// backend) checks its sha256 trailer the way etcd's restore does.
func (m *etcdModel) restore(snap []byte, skipHash bool) error {
	if m.backend == nil || m.backend.Restore == nil {
		if skipHash {
			return nil
		}
		if len(snap)%512 != sha256.Size {
			return errors.New("snapshot missing hash but --skip-hash-check=false")
		}
		sum := sha256.Sum256(snap[:len(snap)-sha256.Size])
		if !bytes.Equal(sum[:], snap[len(snap)-sha256.Size:]) {
			return errors.New("expected sha256 does not match the snapshot")
		}
		return nil
	}
	dir, err := os.MkdirTemp("", "faketalos-recover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "snapshot.db")
	if err := os.WriteFile(path, snap, 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return m.backend.Restore(ctx, path, skipHash)
}

// etcdService is the etcd entry of ServiceList for a control plane.
func (g *Group) etcdService(n *Node, now *timestamppb.Timestamp) *machineapi.ServiceInfo {
	m := g.lockEtcd()
	defer m.mu.Unlock()
	mb := m.memberOf(n)
	switch {
	case mb == nil && m.left[n]:
		return &machineapi.ServiceInfo{Id: "etcd", State: "Finished", Health: &machineapi.ServiceHealth{Unknown: true, LastChange: now}}
	case mb == nil:
		// Waiting for a bootstrap or to join.
		return &machineapi.ServiceInfo{Id: "etcd", State: "Preparing", Health: &machineapi.ServiceHealth{Unknown: true, LastChange: now}}
	case mb.down:
		return &machineapi.ServiceInfo{Id: "etcd", State: "Running", Health: &machineapi.ServiceHealth{Healthy: false, LastMessage: "context deadline exceeded", LastChange: now}}
	case !m.quorumLocked():
		return &machineapi.ServiceInfo{Id: "etcd", State: "Running", Health: &machineapi.ServiceHealth{Healthy: false, LastMessage: "etcdserver: no leader", LastChange: now}}
	}
	return &machineapi.ServiceInfo{Id: "etcd", State: "Running", Health: &machineapi.ServiceHealth{Healthy: true, LastChange: now}}
}

func (s *runningService) etcdCall(method, api string) error {
	if !s.isCP {
		err := status.Errorf(codes.Unimplemented, "%s is only available on control plane nodes", api)
		s.n.record(Call{Method: method, Phase: "running", Code: status.Code(err)})
		return err
	}
	return nil
}

func (s *runningService) done(method, detail string, err error) error {
	s.n.record(Call{Method: method, Phase: "running", Detail: detail, Code: status.Code(err)})
	return err
}

// local returns the node's own healthy member (Talos' local etcd client).
func (m *etcdModel) local(n *Node, what string) (*etcdMember, error) {
	mb := m.memberOf(n)
	if mb == nil || mb.down {
		return nil, status.Errorf(codes.Unavailable, "failed to %s: etcd is not running on this node", what)
	}
	return mb, nil
}

func (s *runningService) EtcdMemberList(context.Context, *machineapi.EtcdMemberListRequest) (*machineapi.EtcdMemberListResponse, error) {
	if err := s.etcdCall("EtcdMemberList", "member list"); err != nil {
		return nil, err
	}
	m := s.n.opts.Group.lockEtcd()
	defer m.mu.Unlock()
	if !m.quorumLocked() {
		return nil, s.done("EtcdMemberList", "", status.Error(codes.Unavailable, "etcdserver: no leader"))
	}
	var members []*machineapi.EtcdMember
	for _, mb := range m.members {
		members = append(members, &machineapi.EtcdMember{
			Id:         mb.id,
			Hostname:   mb.name,
			PeerUrls:   []string{"https://" + net.JoinHostPort(mb.addr, "2380")},
			ClientUrls: []string{"https://" + net.JoinHostPort(mb.addr, "2379")},
		})
	}
	_ = s.done("EtcdMemberList", "", nil)
	return &machineapi.EtcdMemberListResponse{Messages: []*machineapi.EtcdMembers{{Members: members}}}, nil
}

// backendStatus asks the real etcd for its DB size and raft position.
func (m *etcdModel) backendStatus(ctx context.Context) *clientv3.StatusResponse {
	if m.backend == nil || m.backend.Endpoint == "" {
		return nil
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.backend.Endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := c.Status(ctx, m.backend.Endpoint)
	if err != nil {
		return nil
	}
	return st
}

func (s *runningService) EtcdStatus(ctx context.Context, _ *emptypb.Empty) (*machineapi.EtcdStatusResponse, error) {
	if err := s.etcdCall("EtcdStatus", "etcd status"); err != nil {
		return nil, err
	}
	m := s.n.opts.Group.lockEtcd()
	defer m.mu.Unlock()
	mb, err := m.local(s.n, "query etcd status")
	if err != nil {
		return nil, s.done("EtcdStatus", "", err)
	}
	ms := &machineapi.EtcdMemberStatus{MemberId: mb.id, ProtocolVersion: "3.6.4", StorageVersion: "3.6.0", DbSize: 1 << 20, DbSizeInUse: 1 << 19, RaftIndex: 1, RaftTerm: 2, RaftAppliedIndex: 1}
	if st := m.backendStatus(ctx); st != nil {
		ms.ProtocolVersion, ms.DbSize, ms.DbSizeInUse = st.Version, st.DbSize, st.DbSizeInUse
		ms.RaftIndex, ms.RaftTerm, ms.RaftAppliedIndex = st.RaftIndex, st.RaftTerm, st.RaftAppliedIndex
		if st.StorageVersion != "" {
			ms.StorageVersion = st.StorageVersion
		}
	}
	if m.quorumLocked() {
		ms.Leader = m.leader
	} else {
		ms.Errors = append(ms.Errors, "etcdserver: no leader")
	}
	for _, x := range m.members {
		for _, a := range x.alarms {
			ms.Errors = append(ms.Errors, fmt.Sprintf("memberID:%d alarm:%s ", x.id, a))
		}
	}
	_ = s.done("EtcdStatus", "", nil)
	return &machineapi.EtcdStatusResponse{Messages: []*machineapi.EtcdStatus{{MemberStatus: ms}}}, nil
}

func (s *runningService) EtcdAlarmList(context.Context, *emptypb.Empty) (*machineapi.EtcdAlarmListResponse, error) {
	if err := s.etcdCall("EtcdAlarmList", "etcd alarm list"); err != nil {
		return nil, err
	}
	m := s.n.opts.Group.lockEtcd()
	defer m.mu.Unlock()
	if _, err := m.local(s.n, "list etcd alarms"); err != nil {
		return nil, s.done("EtcdAlarmList", "", err)
	}
	if !m.quorumLocked() {
		return nil, s.done("EtcdAlarmList", "", status.Error(codes.Unavailable, "failed to list etcd alarms: etcdserver: no leader"))
	}
	var alarms []*machineapi.EtcdMemberAlarm
	for _, mb := range m.members {
		for _, a := range mb.alarms {
			alarms = append(alarms, &machineapi.EtcdMemberAlarm{MemberId: mb.id, Alarm: a})
		}
	}
	_ = s.done("EtcdAlarmList", "", nil)
	return &machineapi.EtcdAlarmListResponse{Messages: []*machineapi.EtcdAlarm{{MemberAlarms: alarms}}}, nil
}

func (s *runningService) EtcdAlarmDisarm(context.Context, *emptypb.Empty) (*machineapi.EtcdAlarmDisarmResponse, error) {
	if err := s.etcdCall("EtcdAlarmDisarm", "etcd alarm disarm"); err != nil {
		return nil, err
	}
	m := s.n.opts.Group.lockEtcd()
	defer m.mu.Unlock()
	if _, err := m.local(s.n, "disarm etcd alarm"); err != nil {
		return nil, s.done("EtcdAlarmDisarm", "", err)
	}
	var alarms []*machineapi.EtcdMemberAlarm
	for _, mb := range m.members {
		for _, a := range mb.alarms {
			alarms = append(alarms, &machineapi.EtcdMemberAlarm{MemberId: mb.id, Alarm: a})
		}
		mb.alarms = nil
	}
	_ = s.done("EtcdAlarmDisarm", "", nil)
	return &machineapi.EtcdAlarmDisarmResponse{Messages: []*machineapi.EtcdAlarmDisarm{{MemberAlarms: alarms}}}, nil
}

func (s *runningService) EtcdLeaveCluster(context.Context, *machineapi.EtcdLeaveClusterRequest) (*machineapi.EtcdLeaveClusterResponse, error) {
	if err := s.etcdCall("EtcdLeaveCluster", "etcd leave"); err != nil {
		return nil, err
	}
	m := s.n.opts.Group.lockEtcd()
	defer m.mu.Unlock()
	if err := m.leaveLocked(s.n); err != nil {
		return nil, s.done("EtcdLeaveCluster", "", err)
	}
	_ = s.done("EtcdLeaveCluster", "", nil)
	return &machineapi.EtcdLeaveClusterResponse{Messages: []*machineapi.EtcdLeaveCluster{{}}}, nil
}

// leaveLocked removes the node's own member (Talos: remove by local ID,
// stop etcd, wipe its data directory). Not a member: nothing to do.
func (m *etcdModel) leaveLocked(n *Node) error {
	mb := m.memberOf(n)
	if mb == nil {
		return nil
	}
	if err := m.reconfigOK(mb); err != nil {
		return status.Errorf(status.Code(err), "failed to leave cluster: %s", status.Convert(err).Message())
	}
	m.removeLocked(mb, "leave", n)
	return nil
}

func (s *runningService) EtcdRemoveMemberByID(_ context.Context, in *machineapi.EtcdRemoveMemberByIDRequest) (*machineapi.EtcdRemoveMemberByIDResponse, error) {
	if err := s.etcdCall("EtcdRemoveMemberByID", "etcd remove member"); err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("member_id=%x", in.GetMemberId())
	m := s.n.opts.Group.lockEtcd()
	defer m.mu.Unlock()
	mb := m.byID(in.GetMemberId())
	if mb == nil {
		if !m.quorumLocked() {
			return nil, s.done("EtcdRemoveMemberByID", detail, status.Error(codes.Unavailable, "etcdserver: no leader"))
		}
		return nil, s.done("EtcdRemoveMemberByID", detail, status.Error(codes.NotFound, "etcdserver: member not found"))
	}
	if err := m.reconfigOK(mb); err != nil {
		return nil, s.done("EtcdRemoveMemberByID", detail, status.Errorf(status.Code(err), "failed to remove member: %s", status.Convert(err).Message()))
	}
	m.removeLocked(mb, "remove", s.n)
	_ = s.done("EtcdRemoveMemberByID", detail, nil)
	return &machineapi.EtcdRemoveMemberByIDResponse{Messages: []*machineapi.EtcdRemoveMemberByID{{}}}, nil
}

func (s *runningService) EtcdForfeitLeadership(context.Context, *machineapi.EtcdForfeitLeadershipRequest) (*machineapi.EtcdForfeitLeadershipResponse, error) {
	if err := s.etcdCall("EtcdForfeitLeadership", "etcd forfeit leadership"); err != nil {
		return nil, err
	}
	m := s.n.opts.Group.lockEtcd()
	defer m.mu.Unlock()
	mb, err := m.local(s.n, "forfeit leadership")
	if err != nil {
		return nil, s.done("EtcdForfeitLeadership", "", err)
	}
	if !m.quorumLocked() {
		return nil, s.done("EtcdForfeitLeadership", "", status.Error(codes.Unavailable, "failed to forfeit leadership: etcdserver: no leader"))
	}
	if len(m.members) == 1 {
		return nil, s.done("EtcdForfeitLeadership", "", status.Error(codes.Unknown, "failed to forfeit leadership: cannot forfeit leadership, only one member"))
	}
	to := ""
	if m.leader == mb.id {
		for _, x := range m.members {
			if x != mb && x.healthy() {
				m.leader, to = x.id, x.name
				m.event("forfeit", mb, s.n)
				break
			}
		}
	}
	_ = s.done("EtcdForfeitLeadership", "to="+to, nil)
	return &machineapi.EtcdForfeitLeadershipResponse{Messages: []*machineapi.EtcdForfeitLeadership{{Member: to}}}, nil
}

func (s *runningService) EtcdSnapshot(_ *machineapi.EtcdSnapshotRequest, srv grpc.ServerStreamingServer[common.Data]) error {
	if err := s.etcdCall("EtcdSnapshot", "etcd snapshot"); err != nil {
		return err
	}
	m := s.n.opts.Group.lockEtcd()
	_, err := m.local(s.n, "create etcd client")
	backend, faults := m.backend, m.faults[s.n]
	m.mu.Unlock()
	if err != nil {
		return s.done("EtcdSnapshot", "", err)
	}
	if backend == nil || backend.Endpoint == "" {
		return s.done("EtcdSnapshot", "", status.Error(codes.Internal, "fake node: no etcd backend for snapshots"))
	}
	ctx := srv.Context()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{backend.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return s.done("EtcdSnapshot", "", fmt.Errorf("failed to create etcd client: %w", err))
	}
	defer c.Close()
	rd, err := c.Snapshot(ctx)
	if err != nil {
		return s.done("EtcdSnapshot", "", fmt.Errorf("failed reading etcd snapshot: %w", err))
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return s.done("EtcdSnapshot", "", fmt.Errorf("failed reading etcd snapshot: %w", err))
	}
	var detail []string
	if faults.SnapshotCorrupt && len(data) > 0 {
		data[len(data)/2] ^= 0xff
		detail = append(detail, "corrupted")
	}
	if t := faults.SnapshotTruncate; t > 0 && t < len(data) {
		data = data[:t]
		detail = append(detail, fmt.Sprintf("truncated to %d", t))
	}
	for sent := 0; len(data) > 0; sent++ {
		if faults.SnapshotError != "" && sent == 1 {
			return s.done("EtcdSnapshot", "failed", status.Error(codes.Internal, faults.SnapshotError))
		}
		chunk := min(len(data), 64<<10)
		if err := srv.Send(&common.Data{Bytes: data[:chunk]}); err != nil {
			return s.done("EtcdSnapshot", "", err)
		}
		data = data[chunk:]
	}
	return s.done("EtcdSnapshot", strings.Join(detail, ","), nil)
}

func (s *runningService) EtcdRecover(srv grpc.ClientStreamingServer[common.Data, machineapi.EtcdRecoverResponse]) error {
	if err := s.etcdCall("EtcdRecover", "etcd recover"); err != nil {
		return err
	}
	m := s.n.opts.Group.lockEtcd()
	ready := m.memberOf(s.n) == nil && !m.left[s.n]
	m.mu.Unlock()
	if !ready {
		return s.done("EtcdRecover", "", status.Error(codes.FailedPrecondition, "etcd service is not ready for recovery yet"))
	}
	var buf bytes.Buffer
	for {
		msg, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return s.done("EtcdRecover", "", err)
		}
		buf.Write(msg.GetBytes())
	}
	m = &s.n.opts.Group.etcd
	m.mu.Lock()
	if m.uploaded == nil {
		m.uploaded = map[*Node][]byte{}
	}
	m.uploaded[s.n] = buf.Bytes()
	m.mu.Unlock()
	_ = s.done("EtcdRecover", fmt.Sprintf("%d bytes", buf.Len()), nil)
	return srv.SendAndClose(&machineapi.EtcdRecoverResponse{Messages: []*machineapi.EtcdRecover{{}}})
}
