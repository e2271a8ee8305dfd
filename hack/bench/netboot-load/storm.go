package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// stormResult is one boot storm: n machines starting at once.
type stormResult struct {
	Mode     string `json:"mode"`
	Machines int    `json:"machines"`
	// Served: DHCP, TFTP and every HTTP download done.
	Served      int     `json:"served"`
	FailedDHCP  int     `json:"failed_dhcp"`
	FailedTFTP  int     `json:"failed_tftp"`
	FailedHTTP  int     `json:"failed_http"`
	TFTPRetries int     `json:"tftp_retries"`
	Seconds     float64 `json:"seconds"` // until the last machine was served
	P50Ms       float64 `json:"p50_ms"`  // per machine, from its DISCOVER
	P99Ms       float64 `json:"p99_ms"`
	DHCPSeconds float64 `json:"dhcp_seconds"` // until the last ACK
	MBPerSec    float64 `json:"mb_per_second"`
}

// stormLoad boots n simulated machines at once: every machine sends its
// DISCOVER at the start (PXE-flavoured, retransmitted as PXE firmware
// does: after 4, 8, 16 and 32 s, then it gives up); once ACKed it
// fetches tftpFile by TFTP (blksize 1468, lock-step with retransmission,
// as PXE firmware does), then every URL by HTTP. The TFTP and HTTP traffic
// comes from the client namespace's own address: the machines are
// simulated, their addresses are not configured.
func stormLoad(iface string, n, seed int, tftpAddr, tftpFile string, urls []string) (*stormResult, error) {
	if tftpAddr == "" || len(urls) == 0 {
		return nil, errors.New("storm needs -tftp and -urls")
	}
	ta, err := net.ResolveUDPAddr("udp4", tftpAddr)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}, Timeout: 10 * time.Minute}
	res := &stormResult{Mode: "storm", Machines: n}
	var mu sync.Mutex
	var lat []time.Duration
	var bytes int64
	var last time.Time
	var wg sync.WaitGroup
	boot := func(start time.Time) {
		defer wg.Done()
		retries, err := tftpGet(ta, tftpFile)
		mu.Lock()
		res.TFTPRetries += retries
		mu.Unlock()
		if err != nil {
			mu.Lock()
			res.FailedTFTP++
			mu.Unlock()
			return
		}
		var got int64
		for _, u := range urls {
			resp, err := client.Get(u)
			if err == nil {
				var k int64
				k, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				got += k
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s: %s", u, resp.Status)
				}
			}
			if err != nil {
				mu.Lock()
				res.FailedHTTP++
				bytes += got
				mu.Unlock()
				return
			}
		}
		now := time.Now()
		mu.Lock()
		res.Served++
		bytes += got
		lat = append(lat, now.Sub(start))
		if now.After(last) {
			last = now
		}
		mu.Unlock()
	}
	begin := time.Now()
	// PXE firmware's DHCP retransmissions (PXE 2.1: four, after 4, 8, 16
	// and 32 s).
	pxeTimeouts := []time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, 4 * time.Second}
	d, err := dhcpLoad(iface, n, n, seed, true, pxeTimeouts, func(_ int, start time.Time) {
		wg.Add(1)
		go boot(start)
	})
	if err != nil {
		return nil, err
	}
	res.DHCPSeconds = d.Seconds
	res.FailedDHCP = d.Failed
	wg.Wait()
	if !last.IsZero() {
		res.Seconds = last.Sub(begin).Seconds()
		res.MBPerSec = float64(bytes) / 1e6 / res.Seconds
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		res.P50Ms, res.P99Ms = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
	}
	return res, nil
}

// tftpGet fetches file from server with blksize 1468, lock-step (RFC 1350
// and 2348), as PXE firmware does. It returns the retransmissions it
// needed. The RRQ is retried for up to 60 s (a server at its transfer
// limit does not answer); a stalled transfer is resent 5 times, 1 s apart.
func tftpGet(server *net.UDPAddr, file string) (retries int, err error) {
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	rrq := binary.BigEndian.AppendUint16(nil, 1)
	rrq = append(append(rrq, file...), 0)
	rrq = append(append(rrq, "octet"...), 0)
	rrq = append(append(rrq, "blksize"...), 0)
	rrq = append(append(rrq, "1468"...), 0)
	blk := 512 // without an OACK
	buf := make([]byte, 4+1468+64)
	var peer *net.UDPAddr
	var last []byte // what to resend on a timeout
	var want uint16 = 1
	stalls := 0
	deadline := time.Now().Add(60 * time.Second)
	if _, err := c.WriteToUDP(rrq, server); err != nil {
		return 0, err
	}
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		k, from, err := c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return retries, err
			}
			retries++
			if peer == nil { // no answer to the RRQ yet
				if time.Now().After(deadline) {
					return retries, errors.New("tftp: no answer to the request")
				}
				_, err = c.WriteToUDP(rrq, server)
			} else {
				if stalls++; stalls > 5 {
					return retries, errors.New("tftp: transfer stalled")
				}
				_, err = c.WriteToUDP(last, peer)
			}
			if err != nil {
				return retries, err
			}
			continue
		}
		if k < 4 || (peer != nil && !from.IP.Equal(peer.IP)) || (peer != nil && from.Port != peer.Port) {
			continue
		}
		op := binary.BigEndian.Uint16(buf)
		num := binary.BigEndian.Uint16(buf[2:])
		switch op {
		case 6: // OACK: accept, ACK block 0
			if peer != nil {
				continue
			}
			peer = from
			blk = oackBlksize(buf[2:k], blk)
			last = []byte{0, 4, 0, 0}
		case 3: // DATA
			if peer == nil {
				peer = from // no options accepted: 512-byte blocks follow
			}
			if num != want {
				continue // a duplicate; the server resends after its timeout
			}
			last = []byte{0, 4, byte(num >> 8), byte(num)}
			want++
			stalls = 0
			if _, err := c.WriteToUDP(last, peer); err != nil {
				return retries, err
			}
			if k-4 < blk {
				return retries, nil // the short last block
			}
			continue
		case 5: // ERROR
			return retries, fmt.Errorf("tftp error %d: %s", num, string(buf[4:k]))
		default:
			continue
		}
		if _, err := c.WriteToUDP(last, peer); err != nil {
			return retries, err
		}
	}
}

// oackBlksize returns the blksize an OACK accepted (def when it has none).
func oackBlksize(opts []byte, def int) int {
	var fields []string
	for len(opts) > 0 {
		i := 0
		for i < len(opts) && opts[i] != 0 {
			i++
		}
		fields = append(fields, string(opts[:i]))
		if i == len(opts) {
			break
		}
		opts = opts[i+1:]
	}
	for i := 0; i+1 < len(fields); i += 2 {
		if v, err := strconv.Atoi(fields[i+1]); err == nil && strings.EqualFold(fields[i], "blksize") && v >= 8 && v <= 1468 {
			return v
		}
	}
	return def
}
