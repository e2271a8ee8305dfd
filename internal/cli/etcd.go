package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dodai-dev/dodai/internal/bootstrap"
	"github.com/dodai-dev/dodai/internal/etcd"
	"github.com/dodai-dev/dodai/internal/poll"
)

func newEtcdCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "etcd of the control plane: status, snapshots, disaster recovery",
		Long: `etcd looks after the cluster's etcd through the Talos API of the control-plane
nodes: the status of every member, snapshots into checked files, and the
guided recovery from a snapshot when quorum is lost.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newEtcdStatusCmd(g), newEtcdSnapshotCmd(g), newEtcdRestoreCmd(g))
	return cmd
}

func newEtcdStatusCmd(g *Globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every etcd member: leader, health, DB size, raft index, alarms",
		Long: `status asks every control-plane node for its etcd member's status and the
cluster's alarms, and one of them for the member list. It exits 1 when etcd has
no healthy quorum or any member (or control-plane node) is not healthy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.openDay2()
			if err != nil {
				return err
			}
			c := d.etcd()
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			if err := g.Print(st, func(w io.Writer) error { return etcdStatusTable(w, st, c) }); err != nil {
				return err
			}
			if !st.HasQuorum || len(st.NotMembers) > 0 || anyUnhealthy(st) {
				return &ExitError{Code: 1}
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long")
	g.talosPortFlag(cmd)
	return cmd
}

// anyUnhealthy reports whether some member is unhealthy.
func anyUnhealthy(st *etcd.Status) bool {
	for _, m := range st.Members {
		if !m.Healthy {
			return true
		}
	}
	return false
}

func etcdStatusTable(w io.Writer, st *etcd.Status, c *etcd.Client) error {
	rows := [][]string{}
	for _, m := range st.Members {
		addr := ""
		if n, ok := c.Node(m.Node); ok {
			addr = n.Address
		}
		leader, healthy := "", "no"
		if m.Leader {
			leader = "*"
		}
		if m.Healthy {
			healthy = "yes"
		}
		if m.Learner {
			healthy += " (learner)"
		}
		size, inUse, index, term := "-", "-", "-", "-"
		if s := m.Status; s != nil {
			size, inUse = etcd.HumanSize(s.DBSize), etcd.HumanSize(s.DBSizeInUse)
			index, term = strconv.FormatUint(s.RaftIndex, 10), strconv.FormatUint(s.RaftTerm, 10)
		}
		rows = append(rows, []string{m.IDHex, orDash(m.Node), orDash(addr), orDash(leader), healthy, size, inUse, index, term,
			orDash(strings.Join(m.Alarms, ",")), orDash(m.Problem)})
	}
	for _, p := range st.NotMembers {
		if st.Member(p.Node) != nil {
			continue // shown above with its problem
		}
		rows = append(rows, []string{"-", p.Node, orDash(p.Address), "-", "no", "-", "-", "-", "-", "-", p.Problem})
	}
	if err := Table(w, []string{"MEMBER", "NODE", "ADDRESS", "LEADER", "HEALTHY", "DB SIZE", "IN USE", "RAFT INDEX", "TERM", "ALARMS", "PROBLEM"}, rows); err != nil {
		return err
	}
	voting := 0
	for _, m := range st.Members {
		if !m.Learner {
			voting++
		}
	}
	q := "healthy quorum"
	if !st.HasQuorum {
		q = "NO QUORUM"
		if st.ListError != "" {
			q += " (member list: " + st.ListError + ")"
		}
	}
	fmt.Fprintf(w, "\n%s: %d of %d members healthy, %d needed; leader %s\n", q, st.HealthyMembers, voting, st.Quorum, orDash(st.Leader))
	return nil
}

func newEtcdSnapshotCmd(g *Globals) *cobra.Command {
	var keep int
	var out string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Stream a snapshot from a healthy etcd member into a checked 0600 file",
		Long: `snapshot streams a snapshot from a healthy etcd member (a follower when there is
one) through the Talos API into a temporary file, checks it the way etcd's
restore does (the sha256 trailer etcd appends, the database, its revision) and
only then renames it into place, mode 0600. A broken, truncated or corrupted
stream is an error and leaves no file behind.

Without --out the snapshot goes to state/etcd/snapshot-<UTC time>.db in the
cluster directory, and only the newest --keep of those are kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := g.openDay2()
			if err != nil {
				return err
			}
			c := d.etcd()
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			var info *etcd.SnapshotInfo
			if out != "" {
				info, err = c.Snapshot(ctx, nil, out)
			} else {
				var removed []string
				info, removed, err = c.SnapshotRotated(ctx, nil, d.layout.EtcdSnapshots(), keep)
				for _, r := range removed {
					g.Log.Info("removed an old snapshot", "file", r)
				}
			}
			if err != nil {
				return err
			}
			return g.Print(info, func(w io.Writer) error {
				fmt.Fprintf(w, "snapshot written to %s (%s) from %s\n", info.Path, etcd.HumanSize(info.Size), info.Node)
				fmt.Fprintf(w, "verified: revision %d, %d keys, hash %08x, sha256 %s\n", info.Revision, info.TotalKeys, info.Hash, info.SHA256)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the snapshot to this file (default: state/etcd/snapshot-<time>.db, rotated)")
	cmd.Flags().IntVar(&keep, "keep", 10, "rotated snapshots to keep in state/etcd (0: all)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long")
	g.talosPortFlag(cmd)
	return cmd
}

func newEtcdRestoreCmd(g *Globals) *cobra.Command {
	var force bool
	var timeout, interval time.Duration
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Disaster recovery: rebuild etcd from a snapshot when quorum is lost",
		Long: `restore recovers etcd from a snapshot file, in guided steps, each checked
before the next:

  1. the snapshot is checked (sha256 trailer, database, revision);
  2. etcd must have lost quorum: while it still has a healthy quorum the
     restore is refused (it would throw away everything written since the
     snapshot), unless --force;
  3. every control-plane node must answer the Talos API;
  4. every control-plane node whose etcd still holds data is reset (its
     EPHEMERAL partition, where etcd keeps its data, is wiped; it reboots)
     until all of them wait for a bootstrap;
  5. the snapshot is uploaded to the first control-plane node of the file and
     restored there (Talos' recover-from bootstrap; sent exactly once, recorded
     in state/etcd-restore.json);
  6. its etcd member must become healthy;
  7. the other control-plane nodes rejoin, and the Kubernetes API must answer.

Re-running after a failure resumes where it stopped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := g.openDay2()
			if err != nil {
				return err
			}
			c := d.etcd()
			defer c.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := c.Restore(ctx, etcd.RestoreOptions{Snapshot: args[0], Force: force, StateFile: d.layout.EtcdRestore(), Poll: interval, Log: g.Log})
			if err != nil {
				if errors.Is(err, etcd.ErrQuorumHealthy) {
					return &ExitError{Code: 1, Err: err}
				}
				return fmt.Errorf("etcd restore: %w", err)
			}
			if kc, err := os.ReadFile(d.layout.Kubeconfig()); err == nil {
				if err := bootstrap.WaitReadyz(ctx, kc, poll.Options{Interval: interval}, g.Log); err != nil {
					return fmt.Errorf("etcd is restored, but %w", err)
				}
				g.Log.Info("the Kubernetes API answers")
			}
			return g.Print(res, func(w io.Writer) error {
				fmt.Fprintf(w, "etcd restored on %s from %s (revision %d)\n\n", res.RecoveredOn, res.Snapshot.Path, res.Snapshot.Revision)
				return etcdStatusTable(w, res.Status, c)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "restore although etcd still has a healthy quorum (loses what was written since the snapshot)")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	cmd.Flags().DurationVar(&interval, "poll-interval", time.Second, "interval between checks while waiting")
	_ = cmd.Flags().MarkHidden("poll-interval")
	g.talosPortFlag(cmd)
	return cmd
}
