package etcd

import (
	"strings"
	"testing"
)

// members builds a status: "h" healthy, "d" down, "l" healthy learner.
func members(spec string) *Status {
	st := &Status{}
	for i, c := range spec {
		m := Member{ID: uint64(i + 1), Name: string(rune('a' + i)), Node: "cp" + string(rune('1'+i)), Healthy: c != 'd', Learner: c == 'l'}
		st.Members = append(st.Members, m)
	}
	voting, healthy := st.quorumOf()
	st.Quorum, st.HealthyMembers = QuorumSize(voting), healthy
	st.HasQuorum = voting > 0 && healthy >= st.Quorum
	if st.HasQuorum {
		for i := range st.Members {
			if st.Members[i].Healthy && !st.Members[i].Learner {
				st.Members[i].Leader = true
				st.Leader = st.Members[i].Name
				break
			}
		}
	}
	return st
}

func TestCheckRemove(t *testing.T) {
	for _, tc := range []struct {
		name     string
		members  string
		remove   int // index
		want     string
		forcible bool
	}{
		{"last member", "h", 0, "last etcd member", false},
		{"2 to 1", "hh", 1, "", false},
		{"3 to 2 leaves an even membership without redundancy", "hhh", 2, "cannot survive one more failure (an even membership of 2", true},
		{"4 to 3", "hhhh", 3, "", false},
		{"5 to 4", "hhhhh", 4, "", false},
		{"dead member of 3", "hhd", 2, "", false},
		{"healthy member of 3 with one dead: broken", "hhd", 0, "2 members of which 1 healthy, below the quorum of 2", false},
		{"5 with one dead, remove a healthy one", "hhhhd", 0, "cannot survive one more failure (an even membership of 4", true},
		{"5 with two dead, remove a dead one", "hhhdd", 4, "", false},
		{"no quorum", "hdd", 1, "no healthy quorum: 1 of 3 members healthy, 2 needed, no leader", false},
		{"learner", "hhhl", 3, "", false},
		{"2 with one dead, remove the dead", "hd", 1, "no healthy quorum", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := members(tc.members)
			r := st.CheckRemove(&st.Members[tc.remove])
			if tc.want == "" {
				if r.Err != nil {
					t.Fatalf("refused: %v", r.Err)
				}
				return
			}
			if r.Err == nil || !strings.Contains(r.Err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", r.Err, tc.want)
			}
			if r.Forcible != tc.forcible {
				t.Fatalf("forcible = %v", r.Forcible)
			}
		})
	}
}

func TestCheckDisrupt(t *testing.T) {
	for _, tc := range []struct {
		members string
		touch   int
		want    string
	}{
		{"hhh", 0, ""},
		{"hhd", 0, "would leave 1 of 3 members healthy, below the quorum of 2"},
		{"hhd", 2, ""},
		{"hh", 0, "1 of 2 members healthy"},
		{"h", 0, "0 of 1 members healthy"},
		{"hhhhd", 1, ""},
		{"hdd", 0, "no healthy quorum"},
	} {
		st := members(tc.members)
		err := st.CheckDisrupt(&st.Members[tc.touch])
		if tc.want == "" && err != nil {
			t.Errorf("%s/%d: %v", tc.members, tc.touch, err)
		}
		if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s/%d: got %v, want %q", tc.members, tc.touch, err, tc.want)
		}
	}
}

func TestQuorumSize(t *testing.T) {
	for n, q := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4} {
		if QuorumSize(n) != q {
			t.Errorf("QuorumSize(%d) = %d, want %d", n, QuorumSize(n), q)
		}
	}
}
