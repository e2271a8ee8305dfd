package faketalos

import (
	"context"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// readOnly refuses writes through the API, as Talos' COSI API does for
// clients.
type readOnly struct{ state.CoreState }

var errReadOnly = status.Error(codes.PermissionDenied, "not authorized")

func (readOnly) Create(context.Context, resource.Resource, ...state.CreateOption) error {
	return errReadOnly
}

func (readOnly) Update(context.Context, resource.Resource, ...state.UpdateOption) error {
	return errReadOnly
}

func (readOnly) Destroy(context.Context, resource.Pointer, ...state.DestroyOption) error {
	return errReadOnly
}
