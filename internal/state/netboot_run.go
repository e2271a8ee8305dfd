package state

import (
	"os"
	"time"
)

// NetbootRun describes a running netboot server (cluster.Layout's
// NetbootRun file), so `dodai health` can check it; the file is removed
// when netboot stops.
type NetbootRun struct {
	// PID of the dodai netboot process.
	PID int `json:"pid"`
	// URL is the base URL of its HTTP server (iPXE scripts, /metrics).
	URL     string    `json:"url"`
	Started time.Time `json:"started"`
}

// RecordNetbootRun writes the run file of this process's netboot server;
// done removes it. A run file left by a killed server names a PID that is
// gone, which readers treat as "not running".
func RecordNetbootRun(path, url string) (done func(), err error) {
	if err := WriteJSON(path, NetbootRun{PID: os.Getpid(), URL: url, Started: time.Now().UTC()}); err != nil {
		return nil, err
	}
	// A file that cannot be removed is harmless: its PID is gone.
	return func() { _ = os.Remove(path) }, nil
}
