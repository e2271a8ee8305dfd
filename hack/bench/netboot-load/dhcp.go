package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"syscall"
	"time"
)

// The DHCP load client builds and parses its packets by hand and runs one
// event loop on one locked OS thread with blocking syscalls: the client
// shares the two cores with the server under test, so it must cost as
// little as possible and the same for every server. (The servers parse
// with real libraries; this only has to read option 53/54 and yiaddr of
// well-formed replies.)

const (
	opRequest     = 1
	msgDiscover   = 1
	msgOffer      = 2
	msgRequest    = 3
	msgAck        = 5
	msgNak        = 6
	replyTimeout  = 2 * time.Second
	maxTries      = 3
	recvTimeoutMs = 20
)

type dhcpResult struct {
	Mode        string  `json:"mode"`
	MACs        int     `json:"macs"`
	Concurrency int     `json:"concurrency"`
	OK          int     `json:"ok"`
	Failed      int     `json:"failed"`
	Retries     int     `json:"retries"`
	NAKs        int     `json:"naks"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"handshakes_per_second"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
}

// ackLog, when set (-acks), gets a line per ACK.
var ackLog *os.File

// handshake is one client's DISCOVER → OFFER → REQUEST → ACK.
type handshake struct {
	mac      [6]byte
	xid      uint32
	state    byte // msgDiscover or msgRequest: what was sent last
	start    time.Time
	sent     time.Time
	tries    int
	naks     int
	idx      int // the MAC's number
	yiaddr   [4]byte
	serverID [4]byte
}

// rawSocket is a blocking UDP socket on :68, bound to ifname, able to
// broadcast.
func rawSocket(ifname string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, syscall.IPPROTO_UDP)
	if err != nil {
		return -1, err
	}
	for _, o := range [][2]int{{syscall.SO_BROADCAST, 1}, {syscall.SO_REUSEADDR, 1}, {syscall.SO_RCVBUF, 4 << 20}, {syscall.SO_SNDBUF, 4 << 20}} {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, o[0], o[1]); err != nil {
			syscall.Close(fd)
			return -1, err
		}
	}
	if err := syscall.SetsockoptString(fd, syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, ifname); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("binding to %s: %w", ifname, err)
	}
	tv := syscall.NsecToTimeval(int64(recvTimeoutMs * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: 68}); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("binding :68: %w", err)
	}
	return fd, nil
}

// buildPacket writes a client message into b and returns its length.
func buildPacket(b []byte, h *handshake, msg byte, pxe bool) int {
	clear(b[:300])
	b[0], b[1], b[2] = opRequest, 1, 6
	binary.BigEndian.PutUint32(b[4:], h.xid)
	binary.BigEndian.PutUint16(b[10:], 0x8000) // broadcast: no ARP needed for the reply
	copy(b[28:], h.mac[:])
	copy(b[236:], []byte{99, 130, 83, 99})
	o := b[240:]
	n := 0
	put := func(code byte, v ...byte) {
		o[n], o[n+1] = code, byte(len(v))
		copy(o[n+2:], v)
		n += 2 + len(v)
	}
	put(53, msg)
	put(61, 1, h.mac[0], h.mac[1], h.mac[2], h.mac[3], h.mac[4], h.mac[5])
	if msg == msgRequest {
		put(50, h.yiaddr[:]...)
		put(54, h.serverID[:]...)
	}
	put(55, 1, 3, 6, 51, 54, 66, 67)
	if pxe {
		put(60, []byte("PXEClient:Arch:00000:UNDI:002001")...)
		put(93, 0, 0)
	}
	o[n] = 255
	n++
	return max(240+n, 300)
}

// parseReply returns a reply's xid, message type, yiaddr and server id.
func parseReply(b []byte) (xid uint32, msg byte, yiaddr, sid [4]byte, ok bool) {
	if len(b) < 240 || b[0] != 2 || binary.BigEndian.Uint32(b[236:]) != 0x63825363 {
		return 0, 0, yiaddr, sid, false
	}
	xid = binary.BigEndian.Uint32(b[4:])
	copy(yiaddr[:], b[16:20])
	for o := b[240:]; len(o) > 0; {
		code := o[0]
		if code == 255 {
			break
		}
		if code == 0 {
			o = o[1:]
			continue
		}
		if len(o) < 2 || len(o) < 2+int(o[1]) {
			return 0, 0, yiaddr, sid, false
		}
		v := o[2 : 2+o[1]]
		switch {
		case code == 53 && len(v) == 1:
			msg = v[0]
		case code == 54 && len(v) == 4:
			copy(sid[:], v)
		}
		o = o[2+len(v):]
	}
	return xid, msg, yiaddr, sid, msg != 0
}

// dhcpLoad runs n handshakes, c at a time. onAck, when not nil, is called
// (on the event loop's thread: it must not block) for every ACK, with the
// MAC's number and the handshake's start.
//
// timeouts are the waits for a reply before each retransmission; after the
// last one the handshake fails (nil: maxTries × replyTimeout).
func dhcpLoad(iface string, n, c, seed int, pxe bool, timeouts []time.Duration, onAck func(i int, start time.Time)) (*dhcpResult, error) {
	if timeouts == nil {
		timeouts = slices.Repeat([]time.Duration{replyTimeout}, maxTries)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := rawSocket(iface)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	bcast := &syscall.SockaddrInet4{Port: 67, Addr: [4]byte{255, 255, 255, 255}}
	out := make([]byte, 1500)
	in := make([]byte, 1500)
	res := &dhcpResult{Mode: "dhcp", MACs: n, Concurrency: c}
	lat := make([]time.Duration, 0, n)
	inflight := make(map[uint32]*handshake, c)
	next := 0
	send := func(h *handshake, msg byte) error {
		h.state, h.sent = msg, time.Now()
		l := buildPacket(out, h, msg, pxe)
		for {
			err := syscall.Sendto(fd, out[:l], 0, bcast)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.EAGAIN) {
				time.Sleep(100 * time.Microsecond)
				continue
			}
			return err
		}
	}
	startOne := func() error {
		h := &handshake{xid: rand.Uint32(), idx: next}
		for inflight[h.xid] != nil {
			h.xid = rand.Uint32()
		}
		h.mac = [6]byte{0x02, byte(seed)}
		binary.BigEndian.PutUint32(h.mac[2:], uint32(next))
		next++
		h.start = time.Now()
		inflight[h.xid] = h
		return send(h, msgDiscover)
	}
	begin := time.Now()
	for next < n && len(inflight) < c {
		if err := startOne(); err != nil {
			return nil, err
		}
	}
	lastSweep := time.Now()
	for len(inflight) > 0 {
		k, _, err := syscall.Recvfrom(fd, in, 0)
		now := time.Now()
		if err == nil {
			xid, msg, yi, sid, ok := parseReply(in[:k])
			h := inflight[xid]
			if ok && h != nil {
				switch {
				case h.state == msgDiscover && msg == msgOffer:
					h.yiaddr, h.serverID, h.tries = yi, sid, 0
					if err := send(h, msgRequest); err != nil {
						return nil, err
					}
				case h.state == msgRequest && msg == msgNak && h.naks < maxTries:
					// As real clients do: start over with a DISCOVER (dnsmasq
					// NAKs a client that was offered the same address as
					// another one at the same time).
					res.NAKs++
					h.naks++
					h.tries = 0
					if err := send(h, msgDiscover); err != nil {
						return nil, err
					}
				case h.state == msgRequest && (msg == msgAck || msg == msgNak):
					delete(inflight, xid)
					if msg == msgAck {
						res.OK++
						if ackLog != nil {
							// Written at once (unbuffered): a test reads it while the load runs.
							fmt.Fprintf(ackLog, "%x %d.%d.%d.%d %d.%d.%d.%d\n", h.mac, yi[0], yi[1], yi[2], yi[3], sid[0], sid[1], sid[2], sid[3])
						}
						lat = append(lat, now.Sub(h.start))
						if onAck != nil {
							onAck(h.idx, h.start)
						}
					} else {
						res.Failed++
					}
					if next < n {
						if err := startOne(); err != nil {
							return nil, err
						}
					}
				}
			}
		} else if !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR) {
			return nil, fmt.Errorf("receiving: %w", err)
		}
		if now.Sub(lastSweep) < recvTimeoutMs*time.Millisecond {
			continue
		}
		lastSweep = now
		for xid, h := range inflight {
			if now.Sub(h.sent) < timeouts[min(h.tries, len(timeouts)-1)] {
				continue
			}
			h.tries++
			if h.tries >= len(timeouts) {
				delete(inflight, xid)
				res.Failed++
				if next < n {
					if err := startOne(); err != nil {
						return nil, err
					}
				}
				continue
			}
			res.Retries++
			if err := send(h, h.state); err != nil {
				return nil, err
			}
		}
	}
	secs := time.Since(begin).Seconds()
	res.Seconds, res.PerSecond = secs, float64(res.OK)/secs
	if len(lat) > 0 {
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		res.P50Ms, res.P99Ms, res.MaxMs = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1])
	}
	return res, nil
}
