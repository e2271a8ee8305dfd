package power

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"

	"github.com/dodai-dev/dodai/internal/cluster"
)

// IPMI timing: ipmitool's lanplus defaults (1 s per try, 4 retries), so a
// BMC that doesn't answer fails in about 5 s per exchange.
const (
	ipmiTimeout = time.Second
	ipmiRetries = 4
)

type ipmiBMC struct {
	c      *client.Client
	target Target
	closed bool // the library's Close panics when called twice
}

// DialIPMI opens an IPMI v2.0 RMCP+ session (administrator privilege) with
// the target's BMC.
func DialIPMI(ctx context.Context, t Target) (BMC, error) {
	c, err := client.NewClient(t.Address, t.Port, t.Username, t.Password)
	if err != nil {
		return nil, fmt.Errorf("IPMI client for %s: %w", t.Endpoint(), err)
	}
	c.WithTimeout(ipmiTimeout).WithRetry(ipmiRetries)
	if t.CipherSuite != 0 {
		c.WithCipherSuiteID(types.CipherSuiteID(t.CipherSuite))
	}
	if err := c.Connect(ctx); err != nil {
		return nil, ipmiConnectError(t, err)
	}
	return &ipmiBMC{c: c, target: t}, nil
}

// ipmiConnectError turns the library's session-setup errors (one per
// cipher suite tried) into one plain cause.
func ipmiConnectError(t Target, err error) error {
	var rs *types.RmcpStatusError
	s := err.Error()
	switch {
	case errors.Is(err, client.ErrRAKPAuthentication),
		errors.As(err, &rs) && (rs.StatusCode() == types.RmcpStatusCodeUnauthorizedName || rs.StatusCode() == types.RmcpStatusCodeInvalidNameLength),
		strings.Contains(s, "RAKP authentication failed"), strings.Contains(s, "unauthorized name"):
		return fmt.Errorf("IPMI authentication with %s failed: wrong username or password", t.Endpoint())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		strings.Contains(s, "timeout"), strings.Contains(s, "deadline"):
		return fmt.Errorf("BMC %s does not answer IPMI (RMCP+ over UDP): no valid reply in %d tries of %s", t.Endpoint(), ipmiRetries+1, ipmiTimeout)
	case strings.Contains(s, "connection refused"):
		return fmt.Errorf("BMC %s does not answer IPMI (RMCP+ over UDP): nothing listens on that port (ICMP port unreachable)", t.Endpoint())
	}
	return fmt.Errorf("IPMI session with %s: %w", t.Endpoint(), trimErr(err))
}

// trimErr keeps the first line of the library's multi-line errors.
func trimErr(err error) error {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i > 0 {
		return errors.New(s[:i] + " …")
	}
	return err
}

func (b *ipmiBMC) PowerState(ctx context.Context) (State, error) {
	st, err := b.c.GetChassisStatus(ctx)
	if err != nil {
		return Unknown, fmt.Errorf("IPMI Get Chassis Status: %w", trimErr(err))
	}
	if st.PowerIsOn {
		return On, nil
	}
	return Off, nil
}

func (b *ipmiBMC) control(ctx context.Context, c chassis.ChassisControl, what string) error {
	if _, err := b.c.ChassisControl(ctx, c); err != nil {
		return fmt.Errorf("IPMI Chassis Control (%s): %w", what, trimErr(err))
	}
	return nil
}

func (b *ipmiBMC) PowerOn(ctx context.Context) error {
	return b.control(ctx, chassis.ChassisControlPowerUp, "power up")
}

func (b *ipmiBMC) PowerOff(ctx context.Context) error {
	return b.control(ctx, chassis.ChassisControlPowerDown, "power down")
}

func (b *ipmiBMC) PowerCycle(ctx context.Context) error {
	return b.control(ctx, chassis.ChassisControlPowerCycle, "power cycle")
}

// SetPXEOnce writes boot option parameter 5 (boot flags): valid, next boot
// only, force PXE, legacy or EFI as configured. It is what `ipmitool
// chassis bootdev pxe` writes. The flags are read back when the BMC allows.
func (b *ipmiBMC) SetPXEOnce(ctx context.Context) error {
	bootType := types.BIOSBootTypeLegacy
	if b.target.BootMode == cluster.BootModeUEFI {
		bootType = types.BIOSBootTypeEFI
	}
	if err := b.c.SetBootDevice(ctx, types.BootDeviceSelectorForcePXE, bootType, false); err != nil {
		return fmt.Errorf("IPMI Set System Boot Options (boot flags): %w", trimErr(err))
	}
	got := &types.BootOptionParam_BootFlags{}
	if err := b.c.GetSystemBootOptionsParamFor(ctx, got); err != nil {
		return nil // reading back is optional in the spec
	}
	if got.BootDeviceSelector != types.BootDeviceSelectorForcePXE {
		return fmt.Errorf("the BMC accepted the PXE boot flag but reports boot device %s", got.BootDeviceSelector)
	}
	return nil
}

func (b *ipmiBMC) Close(ctx context.Context) error {
	if b.closed {
		return nil
	}
	b.closed = true
	return b.c.Close(ctx)
}
