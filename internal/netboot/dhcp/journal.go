package dhcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dodai-dev/dodai/internal/fsutil"
)

// Durability says when a bound lease counts as persisted, i.e. when its
// DHCPACK may leave.
type Durability int

const (
	// DurableWrite: the lease is written to the journal (the kernel's page
	// cache) before the ACK. That survives every crash of dodai itself
	// (SIGKILL, panic, out of memory); the journal is fdatasynced once a
	// second, so a power loss or kernel crash can lose the leases of the
	// last second.
	DurableWrite Durability = iota
	// DurableSync: the ACK leaves only after an fdatasync that covers the
	// lease, so it also survives a power loss. Leases bound while a sync
	// runs share the next one (group commit): one fdatasync per batch, not
	// per ACK.
	DurableSync
)

// ParseDurability maps "write" and "sync" to a Durability.
func ParseDurability(s string) (Durability, error) {
	switch s {
	case "", "write":
		return DurableWrite, nil
	case "sync":
		return DurableSync, nil
	}
	return 0, fmt.Errorf("lease durability must be write or sync, got %q", s)
}

func (d Durability) String() string {
	if d == DurableSync {
		return "sync"
	}
	return "write"
}

// journal persists the leases: a JSON snapshot (path, written atomically
// with fsync) plus numbered append-only journals (path.journal.N, one JSON
// lease per line) of the changes since. The snapshot names the last journal
// it contains; journals after it are replayed on start. Compaction switches
// appends to a new journal under the allocator's lock, then writes the
// snapshot and removes the folded journal outside it, so the DHCP path
// never waits for a snapshot write.
type journal struct {
	path string
	mode Durability
	mu   *sync.Mutex // the allocator's: appends are ordered by it

	// Guarded by mu.
	f        *os.File
	gen      int   // number of the journal f
	records  int   // records in f
	off      int64 // bytes in f
	unsynced bool
	broken   error // set when a failed write could not be undone
	pending  *Durable
	buf      []byte

	// syncMu is held around every fdatasync and journal switch, so a file
	// is never closed while it is being synced.
	syncMu  sync.Mutex
	syncs   atomic.Int64 // fdatasyncs done
	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

type snapshotFile struct {
	// Journal is the last journal number the snapshot contains.
	Journal int     `json:"journal"`
	Leases  []Lease `json:"leases"`
}

func (j *journal) genPath(n int) string { return j.path + ".journal." + strconv.Itoa(n) }

// legacyPath is the single journal of earlier versions, replayed once.
func (j *journal) legacyPath() string { return j.path + ".journal" }

// openJournal replays the snapshot and the journals after it through
// apply, folds them into a new snapshot (from snapshot()), removes the
// folded journals and opens the next one.
func openJournal(path string, mode Durability, mu *sync.Mutex, apply func(Lease), snapshot func() []Lease) (*journal, error) {
	j := &journal{path: path, mode: mode, mu: mu}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the lease directory: %w", err)
	}
	var snap snapshotFile
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading leases: %w", err)
	default:
		if err := json.Unmarshal(b, &snap); err != nil {
			return nil, fmt.Errorf("reading leases %s: %w (fix or remove the file; it only holds dhcp-mode leases)", path, err)
		}
		for _, le := range snap.Leases {
			apply(le)
		}
	}
	replayed := []string{}
	if err := replay(j.legacyPath(), apply); err == nil {
		replayed = append(replayed, j.legacyPath())
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	gens, err := j.journalGens()
	if err != nil {
		return nil, err
	}
	last := snap.Journal
	for _, n := range gens {
		if n > snap.Journal {
			if err := replay(j.genPath(n), apply); err != nil {
				return nil, err
			}
		}
		replayed = append(replayed, j.genPath(n))
		last = max(last, n)
	}
	if err := j.writeSnapshot(last, snapshot()); err != nil {
		return nil, err
	}
	for _, p := range replayed {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing a folded lease journal: %w", err)
		}
	}
	f, err := os.OpenFile(j.genPath(last+1), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lease journal: %w", err)
	}
	j.f, j.gen = f, last+1
	if mode == DurableSync {
		j.kick, j.stop, j.stopped = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go j.syncer()
	}
	return j, nil
}

// journalGens lists the numbers of the journals on disk, ascending.
func (j *journal) journalGens() ([]int, error) {
	matches, err := filepath.Glob(j.path + ".journal.*")
	if err != nil {
		return nil, fmt.Errorf("listing lease journals: %w", err)
	}
	var gens []int
	for _, m := range matches {
		n, err := strconv.Atoi(strings.TrimPrefix(m, j.path+".journal."))
		if err == nil && n > 0 {
			gens = append(gens, n)
		}
	}
	slices.Sort(gens)
	return gens, nil
}

// replay applies every record of a journal file. A torn last line (the
// process died in the middle of the write, before any ACK for it) is
// ignored; a bad line before it is an error naming the file and line.
func replay(path string, apply func(Lease)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return err
		}
		return fmt.Errorf("reading lease journal: %w", err)
	}
	lines := bytes.Split(b, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var le Lease
		if err := json.Unmarshal(line, &le); err != nil {
			if i == len(lines)-1 {
				break // torn last line
			}
			return fmt.Errorf("reading lease journal %s line %d: %w (the leases it holds are in that file; fix or remove it)", path, i+1, err)
		}
		apply(le)
	}
	return nil
}

func (j *journal) writeSnapshot(gen int, leases []Lease) error {
	b, err := json.MarshalIndent(snapshotFile{Journal: gen, Leases: leases}, "", " ")
	if err != nil {
		return fmt.Errorf("writing leases: %w", err)
	}
	if err := fsutil.WriteFileAtomic(j.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("writing leases: %w", err)
	}
	return nil
}

// appendRecord encodes a lease as one JSON line, without reflection (this
// runs for every ACK); the result decodes to le with encoding/json.
func appendRecord(b []byte, le Lease) []byte {
	b = append(b, `{"mac":"`...)
	b, _ = le.MAC.AppendText(b) // "" for the zero MAC of a declined address
	b = append(b, `","ip":"`...)
	b = le.IP.AppendTo(b)
	b = append(b, `","expiry":"`...)
	b = le.Expiry.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if le.Declined {
		b = append(b, `,"declined":true`...)
	}
	return append(b, "}\n"...)
}

// append writes one change to the journal; the caller holds mu. The
// returned Durable (nil for DurableWrite: the write is done) completes when
// the change is on disk. A nil journal (leases in memory only) has nothing
// to do.
func (j *journal) append(le Lease) (*Durable, error) {
	if j == nil {
		return nil, nil
	}
	if j.broken != nil {
		return nil, fmt.Errorf("%w: the lease journal is unusable after an earlier error: %v", ErrPersist, j.broken)
	}
	if j.f == nil {
		return nil, fmt.Errorf("%w: the lease journal is closed", ErrPersist)
	}
	j.buf = appendRecord(j.buf[:0], le)
	n, err := j.f.Write(j.buf)
	if err != nil {
		if n > 0 {
			// Never leave a torn line in the middle of the journal.
			if terr := j.f.Truncate(j.off); terr != nil {
				j.broken = terr
			}
		}
		return nil, fmt.Errorf("%w: writing the lease journal: %v", ErrPersist, err)
	}
	j.off += int64(n)
	j.records++
	j.unsynced = true
	if j.mode == DurableWrite {
		return nil, nil
	}
	if j.pending == nil {
		j.pending = newDurable()
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	return j.pending, nil
}

func (j *journal) fdatasync(f *os.File) error {
	j.syncs.Add(1)
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			if err != nil {
				return fmt.Errorf("%w: syncing the lease journal: %v", ErrPersist, err)
			}
			return nil
		}
	}
}

// syncer is the group commit of DurableSync: each round takes every change
// written since the last round and makes them durable with one fdatasync.
func (j *journal) syncer() {
	defer close(j.stopped)
	for {
		select {
		case <-j.kick:
		case <-j.stop:
			return
		}
		j.syncMu.Lock()
		j.mu.Lock()
		batch, f := j.pending, j.f
		j.pending, j.unsynced = nil, false
		j.mu.Unlock()
		if batch != nil {
			batch.finish(j.fdatasync(f))
		}
		j.syncMu.Unlock()
	}
}

// sync flushes the journal if anything was written since the last sync.
func (j *journal) sync() error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	j.mu.Lock()
	f, dirty := j.f, j.unsynced
	batch := j.pending
	j.pending, j.unsynced = nil, false
	j.mu.Unlock()
	if !dirty || f == nil {
		return nil
	}
	err := j.fdatasync(f)
	if batch != nil {
		batch.finish(err)
	}
	return err
}

// compact folds the current journal into the snapshot: under mu it syncs
// what is pending, copies the leases and switches to the next journal;
// the snapshot write and the removal of the folded journal happen outside.
func (j *journal) compact(snapshotLocked func() []Lease) error {
	j.syncMu.Lock()
	j.mu.Lock()
	if j.f == nil || j.records == 0 {
		j.mu.Unlock()
		j.syncMu.Unlock()
		return nil
	}
	if j.pending != nil {
		j.pending.finish(j.fdatasync(j.f))
		j.pending = nil
	}
	leases := snapshotLocked()
	gen := j.gen
	nf, err := os.OpenFile(j.genPath(gen+1), os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		j.mu.Unlock()
		j.syncMu.Unlock()
		return fmt.Errorf("opening lease journal: %w", err)
	}
	old := j.f
	j.f, j.gen, j.records, j.off, j.unsynced, j.broken = nf, gen+1, 0, 0, false, nil
	j.mu.Unlock()
	j.syncMu.Unlock()
	old.Close()
	if err := j.writeSnapshot(gen, leases); err != nil {
		return err // journal gen stays and is replayed after the old snapshot
	}
	if err := os.Remove(j.genPath(gen)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing a folded lease journal: %w", err)
	}
	return nil
}

// close stops the syncer, syncs and closes the journal.
func (j *journal) close() error {
	if j.stop != nil {
		close(j.stop)
		<-j.stopped
		j.stop = nil
	}
	err := j.sync()
	j.mu.Lock()
	if j.f != nil {
		if cerr := j.f.Close(); err == nil {
			err = cerr
		}
		j.f = nil
	}
	j.mu.Unlock()
	return err
}
