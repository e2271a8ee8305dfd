//go:build linux

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"time"
)

// fetch is a TFTP read client made for this benchmark (RRQ with blksize,
// windowsize and tsize options, RFC 2347/2348/7440; octet mode): unlike
// atftp, it starts no process per transfer and does no file I/O, so the
// servers compared are the slow part of the path, not the client. Written
// here because the benchmark needs a windowed client it can time from the
// inside; the server's correctness is tested with real clients (atftp,
// tftp-hpa, curl, EDK2, iPXE) in internal/tftp and test/tftpfirmware.
//
// The file's bytes are copied into a buffer allocated and touched before
// the clock starts (-size, grown only if the file is larger): appending to
// a growing slice instead was measured to add ~35 ms per MiB here (page
// faults and copies on every reallocation, on the path that ACKs), which
// made every server look equally slow.
//
// It ACKs the last block of each window (counted from the server's OACK),
// re-ACKs the last block received in order on a gap or after a 1 s
// silence, and prints the transfer's microseconds, from the RRQ to the
// last block, after checking the data's SHA-256.
func fetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:69", "server address")
	file := fs.String("file", "f1m.bin", "file to read")
	blk := fs.Int("blksize", 1468, "blksize option")
	win := fs.Int("windowsize", 32, "windowsize option")
	want := fs.String("sha256", "", "expected SHA-256 of the file (hex)")
	size := fs.Int("size", 1<<20, "expected file size: the receive buffer is allocated and touched before the clock starts")
	_ = fs.Parse(args)
	store := make([]byte, *size+65536)
	for i := 0; i < len(store); i += 4096 {
		store[i] = 1 // fault every page in now, not inside the timing
	}
	data := store[:0] // append stays within store unless the file is larger
	ra, err := net.ResolveUDPAddr("udp4", *addr)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return err
	}
	defer c.Close()

	var req bytes.Buffer
	req.Write([]byte{0, 1})
	for _, s := range []string{*file, "octet", "blksize", strconv.Itoa(*blk), "windowsize", strconv.Itoa(*win), "tsize", "0"} {
		req.WriteString(s)
		req.WriteByte(0)
	}
	start := time.Now()
	if _, err := c.WriteToUDP(req.Bytes(), ra); err != nil {
		return err
	}
	blksize, window := 512, 1 // without an OACK: RFC 1350 defaults
	var server *net.UDPAddr
	buf := make([]byte, 65536+4)
	ack := func(b uint16) error {
		p := []byte{0, 4, 0, 0}
		binary.BigEndian.PutUint16(p[2:], b)
		_, err := c.WriteToUDP(p, server)
		return err
	}
	last := uint16(0) // last block received in order
	inWindow := 0     // blocks received since the last ACK
	silent := 0
	for {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			if silent++; silent > 30 {
				return errors.New("fetch: no answer for 30 s")
			}
			if server == nil {
				if _, err := c.WriteToUDP(req.Bytes(), ra); err != nil {
					return err
				}
			} else if err := ack(last); err != nil {
				return err
			}
			inWindow = 0
			continue
		}
		silent = 0
		if n < 4 || (server != nil && from.Port != server.Port) {
			continue
		}
		switch binary.BigEndian.Uint16(buf) {
		case 5:
			return fmt.Errorf("fetch: server error %d: %s", binary.BigEndian.Uint16(buf[2:]), bytes.TrimRight(buf[4:n], "\x00"))
		case 6: // OACK
			if server != nil {
				continue
			}
			server = from
			opts := bytes.Split(bytes.TrimRight(buf[2:n], "\x00"), []byte{0})
			for i := 0; i+1 < len(opts); i += 2 {
				v, _ := strconv.Atoi(string(opts[i+1]))
				switch string(bytes.ToLower(opts[i])) {
				case "blksize":
					blksize = v
				case "windowsize":
					window = v
				}
			}
			if err := ack(0); err != nil {
				return err
			}
		case 3: // DATA
			if server == nil {
				server = from // the server ignored every option
			}
			b := binary.BigEndian.Uint16(buf[2:])
			if b != last+1 {
				if d := b - last - 1; d < 0x8000 { // ahead: a gap, ask for the rest
					if err := ack(last); err != nil {
						return err
					}
					inWindow = 0
				} // else a block already received (a resent window): ignored
				continue
			}
			last = b
			data = append(data, buf[4:n]...)
			inWindow++
			if n-4 < blksize {
				if err := ack(last); err != nil {
					return err
				}
				us := time.Since(start).Microseconds()
				sum := sha256.Sum256(data)
				if *want != "" && hex.EncodeToString(sum[:]) != *want {
					return fmt.Errorf("fetch: SHA-256 of %d bytes is %x, want %s", len(data), sum, *want)
				}
				fmt.Println(us)
				return nil
			}
			if inWindow == window {
				if err := ack(last); err != nil {
					return err
				}
				inWindow = 0
			}
		}
	}
}
