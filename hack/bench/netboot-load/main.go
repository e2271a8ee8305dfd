// Command netboot-load is the load generator of hack/bench/netboot.sh: full
// DHCPv4 handshakes (DISCOVER → OFFER → REQUEST → ACK) for many MACs at a
// given concurrency with their latency (dhcp mode), or many parallel HTTP
// downloads (http mode), or a boot storm (storm mode: n machines at once,
// each a PXE-flavoured DHCP handshake, then the iPXE binary by TFTP, then
// the kernel and initramfs by HTTP). It prints one JSON result line. Replies are
// matched to handshakes by transaction ID.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	mode := flag.String("mode", "dhcp", "dhcp, http or storm")
	iface := flag.String("i", "eth0", "dhcp: interface to send on")
	n := flag.Int("n", 2000, "dhcp: number of MACs")
	c := flag.Int("c", 1, "concurrency (dhcp: handshakes in flight; http: clients)")
	seed := flag.Int("seed", 1, "dhcp: MAC seed (different seeds give different MACs)")
	pxe := flag.Bool("pxe", false, "dhcp: PXE-flavoured requests (option 60 PXEClient, 93 = 0)")
	urls := flag.String("urls", "", "http, storm: comma-separated URLs each client fetches in order")
	tftpAddr := flag.String("tftp", "", "storm: TFTP server IP:PORT")
	tftpFile := flag.String("tftp-file", "snponly.efi", "storm: file each machine fetches by TFTP")
	acks := flag.String("acks", "", "dhcp: append a line per ACK to this file: MAC, address, server identifier (tests)")
	flag.Parse()
	if *acks != "" {
		f, err := os.OpenFile(*acks, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "netboot-load:", err)
			os.Exit(1)
		}
		defer f.Close()
		ackLog = f
	}
	var res any
	var err error
	switch *mode {
	case "dhcp":
		res, err = dhcpLoad(*iface, *n, *c, *seed, *pxe, nil, nil)
	case "storm":
		res, err = stormLoad(*iface, *n, *seed, *tftpAddr, *tftpFile, splitComma(*urls))
	case "http":
		res, err = httpLoad(*urls, *c)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netboot-load:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "netboot-load:", err)
		os.Exit(1)
	}
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
	urls := splitComma(urlList)
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
