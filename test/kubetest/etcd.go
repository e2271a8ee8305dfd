package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// etcdPorts are etcd's client and peer ports: new ones, or on a restart the
// client port the apiserver uses (the peer port only matters to etcd).
func (e *Env) etcdPorts(keep bool) ([]int, error) {
	if !keep {
		return freePorts(2)
	}
	u, err := url.Parse(e.EtcdURL)
	if err != nil {
		return nil, fmt.Errorf("etcd URL %q: %w", e.EtcdURL, err)
	}
	client, err := strconv.Atoi(u.Port())
	if err != nil {
		return nil, fmt.Errorf("etcd URL %q: %w", e.EtcdURL, err)
	}
	peer, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	return []int{client, peer[0]}, nil
}

// apiServerPorts is the apiserver's port: a new one, or on a restart the
// one clients and kubeconfigs already use.
func (e *Env) apiServerPorts() ([]int, error) {
	if !e.restart {
		return freePorts(1)
	}
	u, err := url.Parse(e.APIServerURL)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		return nil, fmt.Errorf("apiserver URL %q: %w", e.APIServerURL, err)
	}
	return []int{p}, nil
}

// RestoreEtcd is a disaster recovery of the Env's etcd from a snapshot
// file, as Talos does it on a control-plane node: kube-apiserver and etcd
// stop, etcd's own restore (etcdutl) builds a new data directory from the
// snapshot (checking its sha256 unless skipHashCheck), and etcd and
// kube-apiserver start again on their ports, so clients and kubeconfigs
// keep working and see the data of the snapshot.
func (e *Env) RestoreEtcd(ctx context.Context, snapshotPath string, skipHashCheck bool) error {
	for _, comp := range []string{compAPIServer, compEtcd} {
		e.mu.Lock()
		p := e.procs[comp]
		delete(e.procs, comp)
		e.mu.Unlock()
		if p != nil {
			if err := p.stop(stopTimeout); err != nil {
				return fmt.Errorf("stopping %s for the restore: %w", comp, err)
			}
		}
	}
	data := filepath.Join(e.Dir, fmt.Sprintf("etcd-restored-%d", time.Now().UnixNano()))
	ports, err := e.etcdPorts(true)
	if err != nil {
		return err
	}
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:   snapshotPath,
		Name:           "kubetest",
		OutputDataDir:  data,
		PeerURLs:       []string{peer},
		InitialCluster: "kubetest=" + peer,
		SkipHashCheck:  skipHashCheck,
	})
	old := e.etcdData
	e.restart = true
	defer func() { e.restart = false }()
	if err != nil {
		// Bring the old data back up so the Env stays usable.
		return errors.Join(fmt.Errorf("restoring etcd from %s: %w", snapshotPath, err),
			e.startEtcdOn(ctx, old, true), e.startAPIServer(ctx))
	}
	if err := e.startEtcdOn(ctx, data, true); err != nil {
		return err
	}
	if err := e.startAPIServer(ctx); err != nil {
		return err
	}
	return os.RemoveAll(old)
}
