// Command netboot-load is the load generator of hack/bench/netboot.sh: full
// DHCPv4 handshakes (DISCOVER → OFFER → REQUEST → ACK) for many MACs at a
// given concurrency (dhcp mode), or many parallel HTTP downloads (http
// mode). It prints one JSON result line. Packets are built with
// github.com/insomniacslk/dhcp; replies are demultiplexed by transaction ID.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

func main() {
	mode := flag.String("mode", "dhcp", "dhcp or http")
	iface := flag.String("i", "eth0", "dhcp: interface to send on")
	n := flag.Int("n", 2000, "dhcp: number of MACs")
	c := flag.Int("c", 1, "concurrency (dhcp: handshakes in flight; http: clients)")
	seed := flag.Int("seed", 1, "dhcp: MAC seed (different seeds give different MACs)")
	pxe := flag.Bool("pxe", false, "dhcp: PXE-flavoured requests (option 60 PXEClient, 93 = 0)")
	urls := flag.String("urls", "", "http: comma-separated URLs each client fetches in order")
	flag.Parse()
	var res any
	var err error
	switch *mode {
	case "dhcp":
		res, err = dhcpLoad(*iface, *n, *c, *seed, *pxe)
	case "http":
		res, err = httpLoad(*urls, *c)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netboot-load:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

type dhcpResult struct {
	Mode        string  `json:"mode"`
	MACs        int     `json:"macs"`
	Concurrency int     `json:"concurrency"`
	OK          int64   `json:"ok"`
	Failed      int64   `json:"failed"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"handshakes_per_second"`
}

func dhcpLoad(iface string, n, c, seed int, pxe bool) (*dhcpResult, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
			serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, iface)
		})
		return serr
	}}
	conn, err := lc.ListenPacket(context.Background(), "udp4", ":68")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var mu sync.Mutex
	waiting := map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}
	go func() {
		buf := make([]byte, 1500)
		for {
			k, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := dhcpv4.FromBytes(buf[:k])
			if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
				continue
			}
			mu.Lock()
			ch := waiting[m.TransactionID]
			mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		}
	}()
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: 67}
	exchange := func(req *dhcpv4.DHCPv4, want dhcpv4.MessageType) (*dhcpv4.DHCPv4, error) {
		ch := make(chan *dhcpv4.DHCPv4, 4)
		mu.Lock()
		waiting[req.TransactionID] = ch
		mu.Unlock()
		defer func() { mu.Lock(); delete(waiting, req.TransactionID); mu.Unlock() }()
		for try := 0; try < 3; try++ {
			if _, err := conn.WriteTo(req.ToBytes(), bcast); err != nil {
				return nil, err
			}
			t := time.NewTimer(2 * time.Second)
		wait:
			for {
				select {
				case m := <-ch:
					if m.MessageType() == want {
						t.Stop()
						return m, nil
					}
					if m.MessageType() == dhcpv4.MessageTypeNak {
						t.Stop()
						return nil, errors.New("NAK")
					}
				case <-t.C:
					break wait
				}
			}
		}
		return nil, errors.New("timeout")
	}
	var next, ok, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				mac := net.HardwareAddr{0x02, byte(seed), 0, 0, 0, 0}
				binary.BigEndian.PutUint32(mac[2:], uint32(i))
				mods := []dhcpv4.Modifier{dhcpv4.WithBroadcast(true)}
				if pxe {
					mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
						dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 0}))
				}
				d, err := dhcpv4.NewDiscovery(mac, mods...)
				if err != nil {
					failed.Add(1)
					continue
				}
				off, err := exchange(d, dhcpv4.MessageTypeOffer)
				if err != nil {
					failed.Add(1)
					continue
				}
				r, err := dhcpv4.NewRequestFromOffer(off, dhcpv4.WithBroadcast(true))
				if err != nil {
					failed.Add(1)
					continue
				}
				if _, err := exchange(r, dhcpv4.MessageTypeAck); err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return &dhcpResult{Mode: "dhcp", MACs: n, Concurrency: c, OK: ok.Load(), Failed: failed.Load(), Seconds: secs, PerSecond: float64(ok.Load()) / secs}, nil
}

type httpResult struct {
	Mode      string  `json:"mode"`
	Clients   int     `json:"clients"`
	Bytes     int64   `json:"bytes"`
	Failed    int64   `json:"failed"`
	Seconds   float64 `json:"seconds"`
	MBPerSec  float64 `json:"mb_per_second"`
	SlowestMs int64   `json:"slowest_client_ms"`
}

func httpLoad(urlList string, c int) (*httpResult, error) {
	var urls []string
	for _, u := range splitComma(urlList) {
		urls = append(urls, u)
	}
	if len(urls) == 0 {
		return nil, errors.New("no -urls")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: c, DisableCompression: true}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Minute}
	var total, failed, slowest atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			for _, u := range urls {
				resp, err := client.Get(u)
				if err != nil {
					failed.Add(1)
					continue
				}
				n, err := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
				total.Add(n)
			}
			ms := time.Since(t0).Milliseconds()
			for {
				cur := slowest.Load()
				if ms <= cur || slowest.CompareAndSwap(cur, ms) {
					break
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return &httpResult{Mode: "http", Clients: c, Bytes: total.Load(), Failed: failed.Load(), Seconds: secs, MBPerSec: float64(total.Load()) / 1e6 / secs, SlowestMs: slowest.Load()}, nil
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
