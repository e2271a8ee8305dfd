// Package etcd looks after a cluster's etcd through the Talos API of its
// control-plane nodes (dodai never talks to etcd directly): the status of
// every member (leader, DB size, raft index, alarms), the quorum rules that
// decide whether a member may be removed or taken down, member operations
// (leave, remove by ID, forfeit leadership), snapshots streamed from a
// healthy member into checked files, and the guided disaster recovery from
// a snapshot (Talos' recover-from bootstrap).
package etcd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/poll"
	"github.com/dodai-dev/dodai/internal/talos"
)

// Node is a control-plane node of the cluster file.
type Node struct {
	Name    string
	Address string
}

// Client reaches etcd through the Talos API of the control-plane nodes.
type Client struct {
	// Talosconfig authenticates to the nodes.
	Talosconfig *clientconfig.Config
	// Port of the Talos API (default talos.DefaultPort).
	Port int
	// Nodes are the control-plane nodes, in cluster-file order (the first
	// one is where etcd is bootstrapped and recovered).
	Nodes []Node
	// CallTimeout bounds each API call (default 10 s).
	CallTimeout time.Duration

	mu    sync.Mutex
	conns map[string]*client.Client
}

// Close closes the connections.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, cc := range c.conns {
		errs = append(errs, cc.Close())
	}
	c.conns = nil
	return errors.Join(errs...)
}

func (c *Client) port() int {
	if c.Port > 0 {
		return c.Port
	}
	return talos.DefaultPort
}

func (c *Client) timeout() time.Duration {
	if c.CallTimeout > 0 {
		return c.CallTimeout
	}
	return 10 * time.Second
}

// Node returns the control-plane node of that name.
func (c *Client) Node(name string) (Node, bool) {
	i := slices.IndexFunc(c.Nodes, func(n Node) bool { return n.Name == name })
	if i < 0 {
		return Node{}, false
	}
	return c.Nodes[i], true
}

// talos returns a (cached) authenticated client for a node.
func (c *Client) talos(ctx context.Context, n Node) (*client.Client, error) {
	if n.Address == "" {
		return nil, fmt.Errorf("node %s has no known address", n.Name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.conns[n.Address]; cc != nil {
		return cc, nil
	}
	cc, err := talos.Authenticated(ctx, c.Talosconfig, talos.Endpoint(n.Address, c.port()))
	if err != nil {
		return nil, err
	}
	if c.conns == nil {
		c.conns = map[string]*client.Client{}
	}
	c.conns[n.Address] = cc
	return cc, nil
}

// call runs f against a node's Talos API with the call timeout.
func (c *Client) call(ctx context.Context, n Node, f func(context.Context, *client.Client) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	cc, err := c.talos(ctx, n)
	if err != nil {
		return err
	}
	return f(ctx, cc)
}

// Member is one etcd member with what its node reports.
type Member struct {
	// ID is etcd's member ID.
	ID uint64 `json:"-"`
	// IDHex is the ID as etcd prints it (16 hex digits).
	IDHex string `json:"id"`
	// Name is etcd's member name (Talos uses the hostname).
	Name string `json:"name"`
	// Node is the control-plane node of the cluster file running it, "" if
	// none matches (a stale member of a machine that is gone).
	Node       string   `json:"node,omitempty"`
	PeerURLs   []string `json:"peerURLs,omitempty"`
	ClientURLs []string `json:"clientURLs,omitempty"`
	Learner    bool     `json:"learner,omitempty"`
	Leader     bool     `json:"leader"`
	// Healthy: its node answered EtcdStatus for this member, with a leader
	// and without errors.
	Healthy bool `json:"healthy"`
	// Status is the member's own report (nil when its node did not answer).
	Status *MemberStatus `json:"status,omitempty"`
	// Alarms raised for this member (NOSPACE, CORRUPT).
	Alarms []string `json:"alarms,omitempty"`
	// Problem says why the member is not healthy.
	Problem string `json:"problem,omitempty"`
}

func (m *Member) label() string {
	if m.Node != "" {
		return "member " + m.Node
	}
	return fmt.Sprintf("member %s (%s)", m.Name, m.IDHex)
}

// MemberStatus is what a member reports about itself (EtcdStatus).
type MemberStatus struct {
	ProtocolVersion  string   `json:"protocolVersion,omitempty"`
	StorageVersion   string   `json:"storageVersion,omitempty"`
	DBSize           int64    `json:"dbSize"`
	DBSizeInUse      int64    `json:"dbSizeInUse"`
	LeaderID         string   `json:"leaderID,omitempty"`
	RaftIndex        uint64   `json:"raftIndex"`
	RaftTerm         uint64   `json:"raftTerm"`
	RaftAppliedIndex uint64   `json:"raftAppliedIndex"`
	Errors           []string `json:"errors,omitempty"`
}

// NodeProblem is a control-plane node of the cluster file that is not a
// healthy member, with why.
type NodeProblem struct {
	Node    string `json:"node"`
	Address string `json:"address,omitempty"`
	Problem string `json:"problem"`
}

// Status is the whole cluster's etcd as its control-plane nodes report it.
type Status struct {
	Members []Member `json:"members"`
	// Leader is the leader's member name ("" if none is known).
	Leader string `json:"leader,omitempty"`
	// Quorum is how many voting members must be healthy.
	Quorum int `json:"quorum"`
	// HealthyMembers counts healthy voting members.
	HealthyMembers int `json:"healthyMembers"`
	// HasQuorum: the member list answered, a leader is known and enough
	// voting members are healthy.
	HasQuorum bool `json:"hasQuorum"`
	// NotMembers are control-plane nodes without a (healthy) member:
	// unreachable, etcd not running, or not joined.
	NotMembers []NodeProblem `json:"notMembers,omitempty"`
	// ListError is why no node could list the members (no quorum).
	ListError string `json:"listError,omitempty"`
}

// Member returns the member run by a node of the cluster file, or nil.
func (s *Status) Member(node string) *Member {
	for i := range s.Members {
		if s.Members[i].Node == node {
			return &s.Members[i]
		}
	}
	return nil
}

// LeaderMember returns the leader, or nil.
func (s *Status) LeaderMember() *Member {
	for i := range s.Members {
		if s.Members[i].Leader {
			return &s.Members[i]
		}
	}
	return nil
}

// FormatID prints a member ID as etcd does.
func FormatID(id uint64) string { return fmt.Sprintf("%016x", id) }

// ShortErr is a one-line form of a Talos API error.
func ShortErr(err error) string {
	if err == nil {
		return ""
	}
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

type nodeReport struct {
	status *machineapi.EtcdMemberStatus
	alarms []*machineapi.EtcdMemberAlarm
	err    error
}

// Status asks every control-plane node for its member's status and alarms,
// and the first that can for the member list, then matches members to
// nodes.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	if len(c.Nodes) == 0 {
		return nil, errors.New("the cluster has no control-plane node")
	}
	reports := make([]nodeReport, len(c.Nodes))
	var wg sync.WaitGroup
	for i, n := range c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &reports[i]
			r.err = c.call(ctx, n, func(ctx context.Context, cc *client.Client) error {
				resp, err := cc.EtcdStatus(ctx)
				if err != nil {
					return err
				}
				if len(resp.GetMessages()) == 0 || resp.GetMessages()[0].GetMemberStatus() == nil {
					return errors.New("empty etcd status")
				}
				r.status = resp.GetMessages()[0].GetMemberStatus()
				if al, err := cc.EtcdAlarmList(ctx); err == nil && len(al.GetMessages()) > 0 {
					r.alarms = al.GetMessages()[0].GetMemberAlarms()
				}
				return nil
			})
		}()
	}
	wg.Wait()

	// The member list, preferably from a node whose member answered.
	order := make([]int, len(c.Nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(boolInt(reports[a].err != nil), boolInt(reports[b].err != nil))
	})
	var list []*machineapi.EtcdMember
	var listErrs []string
	listed := false
	for _, i := range order {
		err := c.call(ctx, c.Nodes[i], func(ctx context.Context, cc *client.Client) error {
			resp, err := cc.EtcdMemberList(ctx, &machineapi.EtcdMemberListRequest{})
			if err != nil {
				return err
			}
			if len(resp.GetMessages()) > 0 {
				list = resp.GetMessages()[0].GetMembers()
			}
			return nil
		})
		if err == nil {
			listed = true
			break
		}
		listErrs = append(listErrs, c.Nodes[i].Name+": "+ShortErr(err))
	}
	return c.assemble(reports, list, listed, listErrs), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// assemble builds the Status from the per-node reports and the list.
func (c *Client) assemble(reports []nodeReport, list []*machineapi.EtcdMember, listed bool, listErrs []string) *Status {
	st := &Status{}
	if !listed {
		st.ListError = strings.Join(listErrs, "; ")
		// Without a list, each node that answered describes its own member.
		for _, r := range reports {
			if r.status != nil {
				list = append(list, &machineapi.EtcdMember{Id: r.status.GetMemberId()})
			}
		}
	}
	// The leader: what most members report.
	votes := map[uint64]int{}
	for _, r := range reports {
		if r.status != nil && r.status.GetLeader() != 0 {
			votes[r.status.GetLeader()]++
		}
	}
	var leaderID uint64
	for id, v := range votes {
		if v > votes[leaderID] || (v == votes[leaderID] && id < leaderID) {
			leaderID = id
		}
	}
	alarms := map[uint64][]string{}
	for _, r := range reports {
		for _, a := range r.alarms {
			if a.GetAlarm() != machineapi.EtcdMemberAlarm_NONE && !slices.Contains(alarms[a.GetMemberId()], a.GetAlarm().String()) {
				alarms[a.GetMemberId()] = append(alarms[a.GetMemberId()], a.GetAlarm().String())
			}
		}
	}
	// Match members to nodes: by the ID a node reports first, then by name,
	// then by peer address.
	claimed := map[string]bool{}
	byID := map[uint64]string{}
	for i, r := range reports {
		if r.status != nil {
			byID[r.status.GetMemberId()] = c.Nodes[i].Name
			claimed[c.Nodes[i].Name] = true
		}
	}
	for _, lm := range list {
		m := Member{ID: lm.GetId(), IDHex: FormatID(lm.GetId()), Name: lm.GetHostname(), PeerURLs: lm.GetPeerUrls(),
			ClientURLs: lm.GetClientUrls(), Learner: lm.GetIsLearner(), Leader: leaderID != 0 && lm.GetId() == leaderID,
			Alarms: alarms[lm.GetId()]}
		m.Node = byID[m.ID]
		if m.Node == "" {
			for _, n := range c.Nodes {
				if !claimed[n.Name] && (n.Name == m.Name || (n.Address != "" && slices.ContainsFunc(m.PeerURLs, func(u string) bool { return urlHost(u) == n.Address }))) {
					m.Node = n.Name
					break
				}
			}
		}
		if m.Node != "" {
			claimed[m.Node] = true
			i := slices.IndexFunc(c.Nodes, func(n Node) bool { return n.Name == m.Node })
			r := reports[i]
			switch {
			case r.err != nil:
				m.Problem = ShortErr(r.err)
			default:
				m.Status = memberStatus(r.status)
				switch errs := memberErrors(r.status.GetErrors()); {
				case len(errs) > 0:
					m.Problem = strings.Join(errs, "; ")
				case r.status.GetLeader() == 0:
					m.Problem = "no leader"
				default:
					m.Healthy = true
				}
			}
		} else {
			m.Problem = "no control-plane node of the cluster file runs this member (stale, or its machine is gone)"
		}
		if len(m.Alarms) > 0 {
			m.Healthy = false
			if m.Problem == "" {
				m.Problem = "alarm " + strings.Join(m.Alarms, ", ")
			}
		}
		if m.Leader && m.Name != "" {
			st.Leader = m.Name
		} else if m.Leader {
			st.Leader = m.IDHex
		}
		st.Members = append(st.Members, m)
	}
	for i, n := range c.Nodes {
		if m := st.Member(n.Name); m != nil && m.Healthy {
			continue
		}
		p := NodeProblem{Node: n.Name, Address: n.Address}
		switch m := st.Member(n.Name); {
		case m != nil:
			p.Problem = "member unhealthy: " + m.Problem
		case reports[i].err != nil:
			p.Problem = ShortErr(reports[i].err)
		default:
			p.Problem = "not an etcd member"
		}
		st.NotMembers = append(st.NotMembers, p)
	}
	voting, healthy := st.quorumOf()
	st.Quorum, st.HealthyMembers = QuorumSize(voting), healthy
	st.HasQuorum = listed && leaderID != 0 && voting > 0 && healthy >= st.Quorum
	return st
}

// memberErrors drops the alarms from a member's status errors: etcd lists
// every member's alarms there ("memberID:N alarm:NOSPACE"); they are
// attributed to their members from the alarm list instead.
func memberErrors(errs []string) []string {
	var out []string
	for _, e := range errs {
		if !strings.HasPrefix(e, "memberID:") {
			out = append(out, e)
		}
	}
	return out
}

func memberStatus(s *machineapi.EtcdMemberStatus) *MemberStatus {
	ms := &MemberStatus{ProtocolVersion: s.GetProtocolVersion(), StorageVersion: s.GetStorageVersion(), DBSize: s.GetDbSize(),
		DBSizeInUse: s.GetDbSizeInUse(), RaftIndex: s.GetRaftIndex(), RaftTerm: s.GetRaftTerm(),
		RaftAppliedIndex: s.GetRaftAppliedIndex(), Errors: s.GetErrors()}
	if s.GetLeader() != 0 {
		ms.LeaderID = FormatID(s.GetLeader())
	}
	return ms
}

func urlHost(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	h := p.Hostname()
	if ip := net.ParseIP(h); ip != nil {
		return ip.String()
	}
	return h
}

// Leave makes a control-plane node's member leave etcd (Talos removes it,
// stops etcd and wipes its data directory).
func (c *Client) Leave(ctx context.Context, node string) error {
	n, ok := c.Node(node)
	if !ok {
		return fmt.Errorf("%s is not a control-plane node", node)
	}
	return c.call(ctx, n, func(ctx context.Context, cc *client.Client) error {
		if err := cc.EtcdLeaveCluster(ctx, &machineapi.EtcdLeaveClusterRequest{}); err != nil {
			return fmt.Errorf("etcd leave on %s: %s", node, ShortErr(err))
		}
		return nil
	})
}

// RemoveMember removes a member by ID through a node with a healthy member
// (for members whose machine is dead).
func (c *Client) RemoveMember(ctx context.Context, via string, id uint64) error {
	n, ok := c.Node(via)
	if !ok {
		return fmt.Errorf("%s is not a control-plane node", via)
	}
	return c.call(ctx, n, func(ctx context.Context, cc *client.Client) error {
		if err := cc.EtcdRemoveMemberByID(ctx, &machineapi.EtcdRemoveMemberByIDRequest{MemberId: id}); err != nil {
			return fmt.Errorf("removing etcd member %s through %s: %s", FormatID(id), via, ShortErr(err))
		}
		return nil
	})
}

// ForfeitLeadership moves leadership away from a node's member when it is
// the leader; it returns the new leader's name ("" when it was not the
// leader).
func (c *Client) ForfeitLeadership(ctx context.Context, node string) (string, error) {
	n, ok := c.Node(node)
	if !ok {
		return "", fmt.Errorf("%s is not a control-plane node", node)
	}
	var to string
	err := c.call(ctx, n, func(ctx context.Context, cc *client.Client) error {
		resp, err := cc.EtcdForfeitLeadership(ctx, &machineapi.EtcdForfeitLeadershipRequest{})
		if err != nil {
			return fmt.Errorf("forfeiting etcd leadership on %s: %s", node, ShortErr(err))
		}
		if len(resp.GetMessages()) > 0 {
			to = resp.GetMessages()[0].GetMember()
		}
		return nil
	})
	return to, err
}

// WaitHealthyMember polls until the node runs a healthy voting member and
// etcd has quorum (a control plane that just joined).
func (c *Client) WaitHealthyMember(ctx context.Context, node string, interval time.Duration, progress func(problem string)) (*Member, error) {
	var last string
	var healthy *Member
	err := poll.Until(ctx, poll.Options{Interval: interval}, func(ctx context.Context) (bool, error) {
		st, err := c.Status(ctx)
		if err == nil {
			if m := st.Member(node); m != nil && m.Healthy && !m.Learner && st.HasQuorum {
				healthy = m
				return true, nil
			}
			last = memberProblem(st, node)
		} else {
			last = err.Error()
		}
		if progress != nil {
			progress(last)
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("etcd member of %s not healthy in time: %s", node, last)
	}
	return healthy, nil
}

func memberProblem(st *Status, node string) string {
	if m := st.Member(node); m != nil {
		switch {
		case m.Learner:
			return "member is still a learner"
		case !m.Healthy:
			return m.Problem
		}
	}
	for _, p := range st.NotMembers {
		if p.Node == node {
			return p.Problem
		}
	}
	if !st.HasQuorum {
		return st.noQuorum().Error()
	}
	return "not an etcd member yet"
}

// HumanSize prints a byte count like etcdctl does (e.g. "2.1 MB").
func HumanSize(b int64) string {
	const unit = 1000
	if b < unit {
		return strconv.FormatInt(b, 10) + " B"
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(b)/float64(div), "kMGTPE"[exp])
}
