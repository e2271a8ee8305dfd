package power

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// redfishServer is a Redfish service in the shape of DMTF's schemas
// (ServiceRoot, SessionService, ComputerSystem with the Reset action and
// Boot override). No Redfish BMC can run on the test machines, so this is
// the boundary: it checks every request against what the schema allows
// and records them; any violation fails the test.
type redfishServer struct {
	t        *testing.T
	srv      *httptest.Server
	user     string
	pass     string
	allowed  []string // ResetType@Redfish.AllowableValues
	mu       sync.Mutex
	power    string // On / Off
	boot     map[string]string
	token    string
	requests []string // "METHOD path body"
	hang     bool     // never answer
	// broken, when set, may answer a request itself (a faulty BMC).
	broken func(w http.ResponseWriter, r *http.Request) bool
}

var redfishEnums = map[string][]string{
	"BootSourceOverrideTarget":  {"None", "Pxe", "Floppy", "Cd", "Usb", "Hdd", "BiosSetup", "Utilities", "Diags", "UefiShell", "UefiTarget", "SDCard", "UefiHttp", "RemoteDrive", "UefiBootNext", "Recovery"},
	"BootSourceOverrideEnabled": {"Disabled", "Once", "Continuous"},
	"BootSourceOverrideMode":    {"Legacy", "UEFI"},
	"ResetType":                 {"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PushPowerButton", "PowerCycle", "Suspend", "Pause", "Resume", "FullPowerCycle"},
}

func newRedfishServer(t *testing.T, allowed ...string) *redfishServer {
	s := &redfishServer{t: t, user: "admin", pass: "s3cret", allowed: allowed, power: "Off", boot: map[string]string{"BootSourceOverrideTarget": "None", "BootSourceOverrideEnabled": "Disabled"}}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *redfishServer) target() Target {
	u := s.srv.Listener.Addr().(*net.TCPAddr)
	return Target{Node: "n1", Protocol: "redfish", Address: u.IP.String(), Port: u.Port, Username: s.user, Password: s.pass}
}

func (s *redfishServer) dial(ctx context.Context, t Target) (BMC, error) {
	return DialRedfish(ctx, t, s.srv.Client())
}

func (s *redfishServer) fail(w http.ResponseWriter, format string, args ...any) {
	s.t.Errorf("redfish request violates the schema: "+format, args...)
	http.Error(w, fmt.Sprintf(format, args...), http.StatusBadRequest)
}

func (s *redfishServer) json(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (s *redfishServer) serve(w http.ResponseWriter, r *http.Request) {
	if s.hang {
		<-r.Context().Done()
		return
	}
	if s.broken != nil && s.broken(w, r) {
		return
	}
	var body map[string]any
	if r.Method == http.MethodPost || r.Method == http.MethodPatch {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			s.fail(w, "%s %s: Content-Type %q, want application/json", r.Method, r.URL.Path, ct)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			s.fail(w, "%s %s: body is not JSON: %v", r.Method, r.URL.Path, err)
			return
		}
	}
	b, _ := json.Marshal(body)
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path+" "+string(b))
	s.mu.Unlock()
	// Only the service root and session creation are open without a session.
	open := (r.Method == http.MethodGet && (r.URL.Path == "/redfish/v1/" || r.URL.Path == "/redfish/v1")) ||
		(r.Method == http.MethodPost && r.URL.Path == "/redfish/v1/SessionService/Sessions")
	if !open && (s.token == "" || r.Header.Get("X-Auth-Token") != s.token) {
		s.json(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": "Base.1.8.NoValidSession", "message": "no valid session"}})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && strings.TrimSuffix(r.URL.Path, "/") == "/redfish/v1":
		s.json(w, 200, map[string]any{"@odata.id": "/redfish/v1/", "@odata.type": "#ServiceRoot.v1_15_0.ServiceRoot", "Id": "RootService", "RedfishVersion": "1.17.0",
			"Systems": map[string]string{"@odata.id": "/redfish/v1/Systems"}, "SessionService": map[string]string{"@odata.id": "/redfish/v1/SessionService"},
			"Links": map[string]any{"Sessions": map[string]string{"@odata.id": "/redfish/v1/SessionService/Sessions"}}})
	case r.Method == http.MethodPost && r.URL.Path == "/redfish/v1/SessionService/Sessions":
		for k := range body {
			if k != "UserName" && k != "Password" {
				s.fail(w, "session create: unexpected property %q", k)
				return
			}
		}
		if body["UserName"] != s.user || body["Password"] != s.pass {
			s.json(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{"code": "Base.1.8.ResourceAtUriUnauthorized", "message": "bad credentials"}})
			return
		}
		s.token = "tok-" + strconv.Itoa(len(s.requests))
		w.Header().Set("X-Auth-Token", s.token)
		w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/1")
		s.json(w, http.StatusCreated, map[string]any{"@odata.id": "/redfish/v1/SessionService/Sessions/1", "Id": "1", "UserName": s.user})
	case r.Method == http.MethodDelete && r.URL.Path == "/redfish/v1/SessionService/Sessions/1":
		s.token = ""
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && r.URL.Path == "/redfish/v1/Systems":
		s.json(w, 200, map[string]any{"@odata.id": "/redfish/v1/Systems", "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
			"Members@odata.count": 1, "Members": []map[string]string{{"@odata.id": "/redfish/v1/Systems/1"}}})
	case r.Method == http.MethodGet && r.URL.Path == "/redfish/v1/Systems/1":
		reset := map[string]any{"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}
		if s.allowed != nil {
			reset["ResetType@Redfish.AllowableValues"] = s.allowed
		}
		boot := map[string]any{}
		for k, v := range s.boot {
			boot[k] = v
		}
		s.json(w, 200, map[string]any{"@odata.id": "/redfish/v1/Systems/1", "@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem", "Id": "1",
			"PowerState": s.power, "Boot": boot, "Actions": map[string]any{"#ComputerSystem.Reset": reset}})
	case r.Method == http.MethodPost && r.URL.Path == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset":
		rt, _ := body["ResetType"].(string)
		if len(body) != 1 || !slices.Contains(redfishEnums["ResetType"], rt) {
			s.fail(w, "Reset: body %v, want exactly a ResetType from the schema", body)
			return
		}
		if s.allowed != nil && !slices.Contains(s.allowed, rt) {
			s.fail(w, "Reset: %s is not in ResetType@Redfish.AllowableValues %v", rt, s.allowed)
			return
		}
		switch rt {
		case "On", "ForceOn":
			s.power = "On"
		case "ForceOff", "GracefulShutdown":
			s.power = "Off"
		case "PowerCycle", "ForceRestart":
			s.power = "On"
		}
		if s.power == "On" && s.boot["BootSourceOverrideEnabled"] == "Once" {
			s.boot["BootedFrom"] = s.boot["BootSourceOverrideTarget"]
			s.boot["BootSourceOverrideEnabled"] = "Disabled" // the service clears Once at boot
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPatch && r.URL.Path == "/redfish/v1/Systems/1":
		bootAny, ok := body["Boot"].(map[string]any)
		if !ok || len(body) != 1 {
			s.fail(w, "PATCH system: body %v, want only a Boot object", body)
			return
		}
		for k, v := range bootAny {
			enum, known := redfishEnums[k]
			vs, isStr := v.(string)
			if !known || !isStr || !slices.Contains(enum, vs) {
				s.fail(w, "PATCH Boot.%s = %v: not a writable Boot property with a schema value", k, v)
				return
			}
		}
		for k, v := range bootAny {
			s.boot[k] = v.(string)
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		s.fail(w, "unexpected %s %s", r.Method, r.URL.Path)
	}
}

func (s *redfishServer) sawRequest(prefix string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.requests {
		if strings.HasPrefix(r, prefix) {
			return true
		}
	}
	return false
}

func TestRedfishPowerOnPXEOnce(t *testing.T) {
	s := newRedfishServer(t, "On", "ForceOff", "GracefulShutdown", "PowerCycle")
	tg := s.target()
	tg.BootMode = "uefi"
	rs := Run(context.Background(), []Target{tg}, Request{Action: PowerOn, PXEOnce: true, Timeout: 10 * time.Second, Dial: s.dial, Poll: 10 * time.Millisecond})
	r := rs[0]
	if r.Err != nil || r.Before != Off || r.After != On || r.Done != "powered on, PXE once" {
		t.Fatalf("result %+v", r)
	}
	if !s.sawRequest(`PATCH /redfish/v1/Systems/1 {"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":"Pxe"}}`) {
		t.Errorf("no boot override PATCH: %q", s.requests)
	}
	if !s.sawRequest(`POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset {"ResetType":"On"}`) {
		t.Errorf("no Reset On: %q", s.requests)
	}
	if s.boot["BootedFrom"] != "Pxe" || s.boot["BootSourceOverrideEnabled"] != "Disabled" {
		t.Errorf("boot state %v", s.boot)
	}
	if !s.sawRequest("DELETE /redfish/v1/SessionService/Sessions/1") {
		t.Errorf("session not deleted: %q", s.requests)
	}
	// The PATCH came before the power-on: the override applies to this boot.
	pi := slices.IndexFunc(s.requests, func(r string) bool { return strings.HasPrefix(r, "PATCH") })
	ri := slices.IndexFunc(s.requests, func(r string) bool { return strings.Contains(r, `"ResetType":"On"`) })
	if pi < 0 || ri < 0 || pi > ri {
		t.Errorf("boot override after the power-on: %q", s.requests)
	}
}

func TestRedfishActions(t *testing.T) {
	cases := []struct {
		name    string
		allowed []string
		power   string
		action  Action
		want    string // the ResetType sent, "" for none
		done    string
		after   State
	}{
		{"off", []string{"On", "ForceOff"}, "On", PowerOff, "ForceOff", "powered off", Off},
		{"already off", nil, "Off", PowerOff, "", "already off", Off},
		{"cycle", []string{"On", "ForceOff", "PowerCycle"}, "On", Cycle, "PowerCycle", "power cycled", On},
		{"cycle falls back to ForceRestart", []string{"On", "ForceOff", "ForceRestart"}, "On", Cycle, "ForceRestart", "power cycled", On},
		{"cycle of an off machine powers on", []string{"On"}, "Off", Cycle, "On", "was off: powered on", On},
		{"status", nil, "On", Status, "", "-", On},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newRedfishServer(t, c.allowed...)
			if c.allowed == nil {
				s.allowed = nil
			}
			s.power = c.power
			r := Run(context.Background(), []Target{s.target()}, Request{Action: c.action, Timeout: 10 * time.Second, Dial: s.dial, Poll: 10 * time.Millisecond})[0]
			if r.Err != nil || r.Done != c.done || r.After != c.after {
				t.Fatalf("result %+v", r)
			}
			sent := s.sawRequest("POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
			if c.want == "" && sent {
				t.Errorf("a Reset was sent: %q", s.requests)
			}
			if c.want != "" && !s.sawRequest(`POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset {"ResetType":"`+c.want+`"}`) {
				t.Errorf("want Reset %s, requests %q", c.want, s.requests)
			}
		})
	}
}

func TestRedfishFaults(t *testing.T) {
	good := newRedfishServer(t)
	badPass := newRedfishServer(t)
	hang := newRedfishServer(t)
	hang.hang = true
	noCycle := newRedfishServer(t, "On", "ForceOff")
	noCycle.power = "On"
	targets := []Target{good.target(), badPass.target(), hang.target(), noCycle.target()}
	targets[1].Password = "wrong"
	for i := range targets {
		targets[i].Node = fmt.Sprintf("n%d", i)
	}
	servers := []*redfishServer{good, badPass, hang, noCycle}
	dial := func(ctx context.Context, t Target) (BMC, error) {
		i, _ := strconv.Atoi(strings.TrimPrefix(t.Node, "n"))
		return DialRedfish(ctx, t, servers[i].srv.Client())
	}
	start := time.Now()
	rs := Run(context.Background(), targets, Request{Action: Cycle, Timeout: 3 * time.Second, Dial: dial, Poll: 10 * time.Millisecond})
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("took %s: the hanging BMC held the others up", d)
	}
	if rs[0].Err != nil || rs[0].Done != "was off: powered on" {
		t.Errorf("good BMC: %+v", rs[0])
	}
	if rs[1].Err == nil || !strings.Contains(rs[1].Error, "wrong username or password") {
		t.Errorf("bad password: %+v", rs[1])
	}
	if rs[2].Err == nil || !strings.Contains(rs[2].Error, "gave up after 3s") && !strings.Contains(rs[2].Error, "deadline") {
		t.Errorf("hanging BMC: %+v", rs[2])
	}
	if rs[3].Err == nil || !strings.Contains(rs[3].Error, "supports none of the reset types") {
		t.Errorf("no power cycle: %+v", rs[3])
	}
	if Failed(rs) != 3 {
		t.Errorf("failed = %d", Failed(rs))
	}
}

// A BMC answering garbage gets a clear error naming the BMC and what was
// being done, never a panic or a hang.
func TestRedfishBadResponses(t *testing.T) {
	// after: answer that many matching requests normally first.
	onAfter := func(after int, method, path string, answer func(w http.ResponseWriter)) func(http.ResponseWriter, *http.Request) bool {
		return func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method != method || strings.TrimSuffix(r.URL.Path, "/") != path {
				return false
			}
			if after > 0 {
				after--
				return false
			}
			answer(w)
			return true
		}
	}
	on := func(method, path string, answer func(w http.ResponseWriter)) func(http.ResponseWriter, *http.Request) bool {
		return onAfter(0, method, path, answer)
	}
	truncated := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"@odata.id": "/redfish/v1/Systems/1", "PowerState": "O`))
	}
	fail500 := func(w http.ResponseWriter) { http.Error(w, "internal error", http.StatusInternalServerError) }
	html := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html><body>Login</body></html>"))
	}
	for _, c := range []struct {
		name   string
		broken func(http.ResponseWriter, *http.Request) bool
		want   []string
	}{
		{"service root is HTML", on("GET", "/redfish/v1", html), []string{"redfish 127.0.0.1:", "logging in"}},
		{"systems is HTML", on("GET", "/redfish/v1/Systems", html), []string{"listing systems"}},
		{"no system", on("GET", "/redfish/v1/Systems", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"@odata.id": "/redfish/v1/Systems", "Members": []}`))
		}), []string{"manages 0 computer systems", "a BMC per machine"}},
		{"system is truncated JSON while listing", on("GET", "/redfish/v1/Systems/1", truncated), []string{"listing systems", "/redfish/v1/Systems/1", "unexpected EOF"}},
		{"system answers 500 while listing", on("GET", "/redfish/v1/Systems/1", fail500), []string{"listing systems", "/redfish/v1/Systems/1", "500"}},
		{"system is truncated JSON later", onAfter(1, "GET", "/redfish/v1/Systems/1", truncated), []string{"reading power state", "reading /redfish/v1/Systems/1"}},
		{"system answers 500 later", onAfter(1, "GET", "/redfish/v1/Systems/1", fail500), []string{"reading power state", "reading /redfish/v1/Systems/1", "500"}},
		{"unknown power state never reaches on", on("GET", "/redfish/v1/Systems/1", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "PowerState": "Confused", "Actions": {"#ComputerSystem.Reset": {"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}}}`))
		}), []string{"powered on, but the BMC still reports unknown"}},
		// The deadline cuts a slow read: the last state the BMC did
		// report is the answer, not the cut read.
		{"slow unknown power state", on("GET", "/redfish/v1/Systems/1", func(w http.ResponseWriter) {
			time.Sleep(300 * time.Millisecond)
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "PowerState": "Confused", "Actions": {"#ComputerSystem.Reset": {"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}}}`))
		}), []string{"powered on, but the BMC still reports unknown"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newRedfishServer(t)
			s.broken = c.broken
			rs := Run(context.Background(), []Target{s.target()}, Request{Action: PowerOn, Timeout: 2 * time.Second, Dial: s.dial, Poll: 50 * time.Millisecond})
			if rs[0].Err == nil {
				t.Fatalf("no error: %+v", rs[0])
			}
			for _, w := range c.want {
				if !strings.Contains(rs[0].Error, w) {
					t.Errorf("error %q lacks %q", rs[0].Error, w)
				}
			}
			if rs[0].Duration > 4*time.Second {
				t.Errorf("took %s with a 2s bound", rs[0].Duration)
			}
		})
	}
}

func TestRunParallelLimit(t *testing.T) {
	// Parallel bounds how many BMCs are talked to at once (boot storms).
	var mu sync.Mutex
	cur, peak := 0, 0
	servers := make([]*redfishServer, 6)
	targets := make([]Target, 6)
	for i := range servers {
		servers[i] = newRedfishServer(t)
		targets[i] = servers[i].target()
		targets[i].Node = strconv.Itoa(i)
	}
	dial := func(ctx context.Context, t Target) (BMC, error) {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		defer func() { mu.Lock(); cur--; mu.Unlock() }()
		i, _ := strconv.Atoi(t.Node)
		time.Sleep(50 * time.Millisecond)
		return DialRedfish(ctx, t, servers[i].srv.Client())
	}
	rs := Run(context.Background(), targets, Request{Action: PowerOn, Parallel: 2, Timeout: 10 * time.Second, Dial: dial, Poll: 10 * time.Millisecond})
	if Failed(rs) != 0 {
		t.Fatalf("%+v", rs)
	}
	if peak > 2 {
		t.Errorf("peak concurrency %d > 2", peak)
	}
	for i, r := range rs {
		if r.Node != strconv.Itoa(i) {
			t.Errorf("results out of order: %d is %s", i, r.Node)
		}
	}
}
