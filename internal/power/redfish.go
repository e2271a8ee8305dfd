package power

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/schemas"

	"github.com/dodai-dev/dodai/internal/cluster"
)

type redfishBMC struct {
	api    *gofish.APIClient
	system string // @odata.id of the one ComputerSystem
	target Target
}

// DialRedfish logs in to the target's Redfish service (a session, deleted
// by Close) and finds its computer system: the service must manage exactly
// one. httpClient is optional (tests pass their TLS server's client).
func DialRedfish(ctx context.Context, t Target, httpClient *http.Client) (BMC, error) {
	cfg := gofish.ClientConfig{
		Endpoint:   "https://" + t.Endpoint(),
		Username:   t.Username,
		Password:   t.Password,
		Insecure:   t.Insecure,
		HTTPClient: httpClient,
	}
	api, err := gofish.ConnectContext(ctx, cfg)
	if err != nil {
		return nil, redfishError(t, "logging in", err)
	}
	systems, err := api.Service.Systems()
	if err != nil {
		api.Logout()
		return nil, redfishError(t, "listing systems", err)
	}
	if len(systems) != 1 {
		api.Logout()
		ids := make([]string, 0, len(systems))
		for _, s := range systems {
			ids = append(ids, s.ODataID)
		}
		return nil, fmt.Errorf("redfish %s manages %d computer systems (%s); dodai needs a BMC per machine", t.Endpoint(), len(systems), strings.Join(ids, ", "))
	}
	return &redfishBMC{api: api, system: systems[0].ODataID, target: t}, nil
}

func redfishError(t Target, doing string, err error) error {
	var he *schemas.Error
	if errors.As(err, &he) && (he.HTTPReturnedStatusCode == http.StatusUnauthorized || he.HTTPReturnedStatusCode == http.StatusForbidden) {
		return fmt.Errorf("redfish %s: %s: authentication failed (HTTP %d): wrong username or password", t.Endpoint(), doing, he.HTTPReturnedStatusCode)
	}
	return fmt.Errorf("redfish %s: %s: %w", t.Endpoint(), doing, err)
}

func (b *redfishBMC) get() (*schemas.ComputerSystem, error) {
	s, err := schemas.GetComputerSystem(b.api, b.system)
	if err != nil {
		return nil, redfishError(b.target, "reading "+b.system, err)
	}
	return s, nil
}

func (b *redfishBMC) PowerState(context.Context) (State, error) {
	s, err := b.get()
	if err != nil {
		return Unknown, err
	}
	switch s.PowerState {
	case schemas.OnPowerState, schemas.PoweringOffPowerState:
		return On, nil
	case schemas.OffPowerState, schemas.PoweringOnPowerState:
		// PoweringOn is reported as off until it is on, so a caller waiting
		// for "on" keeps waiting.
		return Off, nil
	}
	return Unknown, nil
}

func (b *redfishBMC) reset(types ...schemas.ResetType) error {
	s, err := b.get()
	if err != nil {
		return err
	}
	supported, _ := s.GetSupportedResetTypes()
	rt := types[0]
	if len(supported) > 0 {
		i := slices.IndexFunc(types, func(t schemas.ResetType) bool { return slices.Contains(supported, t) })
		if i < 0 {
			return fmt.Errorf("redfish %s: the system supports none of the reset types %v (it offers %v)", b.target.Endpoint(), types, supported)
		}
		rt = types[i]
	}
	if _, err := s.Reset(rt); err != nil {
		return redfishError(b.target, "ComputerSystem.Reset "+string(rt), err)
	}
	return nil
}

func (b *redfishBMC) PowerOn(context.Context) error { return b.reset(schemas.OnResetType) }

func (b *redfishBMC) PowerOff(context.Context) error { return b.reset(schemas.ForceOffResetType) }

// PowerCycle prefers PowerCycle and falls back to ForceRestart, which many
// BMCs offer instead.
func (b *redfishBMC) PowerCycle(context.Context) error {
	return b.reset(schemas.PowerCycleResetType, schemas.ForceRestartResetType)
}

// SetPXEOnce PATCHes Boot.BootSourceOverrideTarget=Pxe with
// BootSourceOverrideEnabled=Once (and BootSourceOverrideMode when the node
// names a boot mode).
func (b *redfishBMC) SetPXEOnce(context.Context) error {
	s, err := b.get()
	if err != nil {
		return err
	}
	boot := &schemas.Boot{BootSourceOverrideTarget: schemas.PxeBootSource, BootSourceOverrideEnabled: schemas.OnceBootSourceOverrideEnabled}
	switch b.target.BootMode {
	case cluster.BootModeUEFI:
		boot.BootSourceOverrideMode = schemas.UEFIBootSourceOverrideMode
	case cluster.BootModeLegacy:
		boot.BootSourceOverrideMode = schemas.LegacyBootSourceOverrideMode
	}
	if err := s.SetBoot(boot); err != nil {
		return redfishError(b.target, "setting Boot.BootSourceOverride", err)
	}
	return nil
}

func (b *redfishBMC) Close(context.Context) error {
	b.api.Logout()
	return nil
}
