package etcd

import (
	"errors"
	"fmt"
)

// ErrNoQuorum is returned (wrapped) when etcd has no healthy quorum.
var ErrNoQuorum = errors.New("etcd has no healthy quorum")

// QuorumSize is the number of voting members a cluster of n needs to agree.
func QuorumSize(n int) int { return n/2 + 1 }

// tolerance is how many more healthy voting members may fail before quorum
// is lost (negative: already lost).
func tolerance(voting, healthy int) int { return healthy - QuorumSize(voting) }

// quorumOf counts voting members and healthy voting members.
func (s *Status) quorumOf() (voting, healthy int) {
	for _, m := range s.Members {
		if m.Learner {
			continue
		}
		voting++
		if m.Healthy {
			healthy++
		}
	}
	return voting, healthy
}

func (s *Status) noQuorum() error {
	voting, healthy := s.quorumOf()
	return fmt.Errorf("%w: %d of %d members healthy, %d needed%s", ErrNoQuorum, healthy, voting, QuorumSize(voting), s.leaderNote())
}

func (s *Status) leaderNote() string {
	if s.Leader == "" {
		return ", no leader"
	}
	return ""
}

// Removal says whether removing one member keeps etcd safe.
type Removal struct {
	// Err is why the removal is refused; nil: allowed.
	Err error
	// Forcible: --force may override Err (the removal itself is possible,
	// only the remaining redundancy suffers).
	Forcible bool
}

// CheckRemove decides whether member m can be removed. It refuses when
// etcd has no healthy quorum now, when m is the last voting member, when
// the remaining members would not have a healthy quorum (broken), and when
// the removal would take the cluster from surviving a failure to surviving
// none — 3 → 2 is the classic case: an even membership of 2 needs both
// members, so it is worse than 1. Only that last refusal is Forcible; 5 → 4
// and 4 → 3 are allowed, and removing a dead member is allowed whenever the
// rest stay a healthy quorum.
func (s *Status) CheckRemove(m *Member) Removal {
	if !s.HasQuorum {
		return Removal{Err: s.noQuorum()}
	}
	if m.Learner {
		return Removal{}
	}
	voting, healthy := s.quorumOf()
	rest := voting - 1
	if rest <= 0 {
		return Removal{Err: fmt.Errorf("%s is the last etcd member: removing it would destroy the cluster's data (restore from a snapshot instead)", m.label())}
	}
	healthyRest := healthy
	if m.Healthy {
		healthyRest--
	}
	if healthyRest < QuorumSize(rest) {
		return Removal{Err: fmt.Errorf("removing %s would leave %d members of which %d healthy, below the quorum of %d: etcd would stop; bring the unhealthy members back first", m.label(), rest, healthyRest, QuorumSize(rest))}
	}
	if tolerance(voting, healthy) > 0 && tolerance(rest, healthyRest) <= 0 {
		even := ""
		if rest%2 == 0 {
			even = fmt.Sprintf(" (an even membership of %d needs %d to agree)", rest, QuorumSize(rest))
		}
		return Removal{Forcible: true, Err: fmt.Errorf("removing %s would leave %d members that cannot survive one more failure%s, while the cluster survives one now: add a control-plane node first, or use --force", m.label(), rest, even)}
	}
	return Removal{}
}

// CheckDisrupt decides whether member m may go down for a while (reboot,
// upgrade) without losing quorum: the other healthy voting members must
// still be a quorum of all voting members.
func (s *Status) CheckDisrupt(m *Member) error {
	if !s.HasQuorum {
		return s.noQuorum()
	}
	voting, healthy := s.quorumOf()
	if m.Healthy && !m.Learner {
		healthy--
	}
	if healthy < QuorumSize(voting) {
		return fmt.Errorf("taking %s down would leave %d of %d members healthy, below the quorum of %d", m.label(), healthy, voting, QuorumSize(voting))
	}
	return nil
}
