package bootstrap

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// A node named twice must run once: two workers for one node would apply
// twice and close its channels twice (a panic).
func TestSelectNodesDeduplicates(t *testing.T) {
	spec := &cluster.Spec{Nodes: []cluster.Node{{Name: "cp1"}, {Name: "w1"}}}
	r := &runner{spec: spec, opts: Options{Nodes: []string{"w1", "cp1", "w1"}, Source: &cluster.Source{File: "cluster.yaml"}}}
	got, err := r.selectNodes()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range got {
		names = append(names, n.Name)
	}
	if strings.Join(names, ",") != "w1,cp1" {
		t.Fatalf("got %v", names)
	}
	r.opts.Nodes = []string{"nope"}
	if _, err := r.selectNodes(); err == nil || !strings.Contains(err.Error(), `node "nope": no such node`) {
		t.Fatalf("unknown node: %v", err)
	}
}

func TestRetryableBootstrap(t *testing.T) {
	cases := map[error]bool{
		status.Error(codes.FailedPrecondition, "bootstrap is not available yet"):                          true,
		status.Error(codes.FailedPrecondition, "time is not in sync yet"):                                 true,
		status.Error(codes.Unavailable, "connection reset"):                                               true,
		status.Error(codes.DeadlineExceeded, "context deadline exceeded"):                                 true,
		status.Error(codes.FailedPrecondition, "bootstrap can only be performed on a control plane node"): false,
		status.Error(codes.PermissionDenied, "no"):                                                        false,
	}
	for err, want := range cases {
		if got := retryableBootstrap(err); got != want {
			t.Errorf("%v: got %v, want %v", err, got, want)
		}
	}
}
