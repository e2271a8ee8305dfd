package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopTimeout is how long a process gets between SIGTERM and SIGKILL.
const stopTimeout = 10 * time.Second

// process is one child process (etcd, kube-apiserver, a controller) with its
// output appended to a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{} // closed when the process has exited
	waitErr error         // set before done is closed
}

// startProcess starts bin with args, appending stdout and stderr to logPath
// (after a header line naming the command). The child gets SIGKILL if the
// test process dies (Pdeathsig), so a crashed test leaves nothing behind.
func startProcess(name, logPath string, env []string, bin string, args ...string) (*process, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory for %s: %w", name, err)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log file for %s: %w", name, err)
	}
	fmt.Fprintf(f, "=== %s starting %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		fmt.Fprintf(f, "=== %s exited: %v\n", time.Now().UTC().Format(time.RFC3339Nano), p.waitErr)
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process ID recorded at start.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// errExited is wrapped by waitReady when the process died before becoming ready.
var errExited = errors.New("process exited")

// waitReady polls check until it succeeds, ctx ends, timeout passes or the
// process exits. Errors include the last check error and the log tail.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s (pid %d) %w before it was ready (%v); last check: %v; log %s:\n%s",
				p.name, p.pid(), errExited, p.waitErr, last, p.logPath, p.tail(30))
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (pid %d) to be ready: %w; last check: %v; log %s:\n%s",
				p.name, p.pid(), ctx.Err(), last, p.logPath, p.tail(30))
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM to the recorded PID, waits up to timeout for the process
// to exit, then sends SIGKILL and waits again. It is safe to call twice.
func (p *process) stop(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending SIGTERM to %s (pid %d): %w", p.name, p.pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("sending SIGKILL to %s (pid %d): %w", p.name, p.pid(), err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.pid())
	}
}

// tail returns the last n lines of the process log.
func (p *process) tail(n int) string { return tailFile(p.logPath, n) }

// tailFile returns the last n lines of the file at path (reading at most its
// last 64 KiB), or a note saying why it could not be read.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const maxTail = 64 << 10
	if st, err := f.Stat(); err == nil && st.Size() > maxTail {
		if _, err := f.Seek(st.Size()-maxTail, io.SeekStart); err != nil {
			return fmt.Sprintf("(cannot read log: %v)", err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
