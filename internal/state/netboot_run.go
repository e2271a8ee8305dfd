package state

import "time"

// NetbootRunFile (in Dir) is where a running `dodai netboot` describes
// itself, so `dodai health` can check it; it is removed when netboot stops.
const NetbootRunFile = "netboot.json"

// NetbootRun describes a running netboot server.
type NetbootRun struct {
	// PID of the dodai netboot process.
	PID int `json:"pid"`
	// HTTP is the address its HTTP server (iPXE scripts, /metrics) listens on.
	HTTP    string    `json:"http"`
	Started time.Time `json:"started"`
}
