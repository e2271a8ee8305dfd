package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dodai-dev/dodai/internal/fsutil"
)

// HookScript is ipmi_sim's chassis_control program for a lab machine. ipmi_sim
// runs it through popen as `HOOK MACHINE-DIR 0x20 get power` or `HOOK
// MACHINE-DIR 0x20 set power "1" …` for every chassis command and waits for
// it, single-threaded (OpenIPMI lanserv: bmc_chassis.c, extcmd.c); a get
// prints "parm:value" lines. A Get Chassis Status is one call, and a power
// cycle polls "get power" every second until the machine is off. That is
// why this is a POSIX shell script of a few milliseconds per call and not a
// dodai subcommand: a dodai process start costs 0.6 s and 100 MB at rest and
// several seconds on a loaded host, during which the BMC answers nothing
// and the client's retries pile up.
//
// Parameters: power (0/1), reset, shutdown (a hard off here), boot (pxe,
// default, none, cdrom, bios: anything but pxe means the disk), identify.
// ipmi_sim does not pass the boot flags' "persistent" bit, so a boot device
// set here applies to the next power-on only, as `ipmitool chassis bootdev
// pxe` without options=persistent means.
//
// Files in MACHINE-DIR (the same ones Running, PID, PowerOff and Boots
// read): start-disk and start-pxe (the machine's command, one argument per
// line), power.pid ("PID STARTTIME", field 22 of /proc/PID/stat, so a reused
// PID never counts), boot (the next boot device), boots.log ("TIME DEVICE
// PID" per power-on), console.log (the machine's output and these
// messages), hook.log (one line per call). The machine runs in its own
// session with no descriptor of the hook's stdout: ipmi_sim waits for that
// pipe to close.
const HookScript = `#!/bin/sh
# dodai lab: ipmi_sim's chassis_control program for one lab machine
# (written by dodai lab up; documented in dodai's internal/lab/hook.go).
#   bmc-hook MACHINE-DIR MC get PARM...
#   bmc-hook MACHINE-DIR MC set PARM VALUE...
set -u
if [ $# -lt 3 ]; then echo "usage: bmc-hook MACHINE-DIR MC get|set PARM [VALUE]..." >&2; exit 2; fi
d=$1 op=$3
shift 3
cd "$d" || exit 1
echo "$(date -u +%Y-%m-%dT%H:%M:%S.%NZ) $op $*" >> hook.log

now() { date -u +%Y-%m-%dT%H:%M:%S.%NZ; }

# starttime PID: sets st to the start time of a live, non-zombie process.
starttime() {
	read -r l 2>/dev/null < "/proc/$1/stat" || return 1
	l=${l##*) }
	set -- $l
	case $1 in Z|X|x) return 1 ;; esac
	[ $# -ge 20 ] || return 1
	shift 19
	st=$1
}

# running: the recorded machine process is alive (sets pid).
running() {
	pid= want=
	read -r pid want 2>/dev/null < power.pid || return 1
	case $pid in ''|*[!0-9]*) return 1 ;; esac
	starttime "$pid" && [ "$st" = "$want" ]
}

# waitgone N: up to N tenths of a second for the machine to end.
waitgone() {
	i=0
	while [ "$i" -lt "$1" ]; do
		running || return 0
		sleep 0.1
		i=$((i + 1))
	done
	! running
}

power_on() {
	running && return 0
	dev=disk b=
	read -r b 2>/dev/null < boot
	[ "$b" = pxe ] && dev=pxe
	if [ ! -s "start-$dev" ]; then echo "no start-$dev in $d" >&2; return 1; fi
	set --
	while IFS= read -r a; do set -- "$@" "$a"; done < "start-$dev"
	echo "=== dodai lab: power on, boot from $dev, $(now) ===" >> console.log
	# A background job of a non-interactive shell is no process group
	# leader, so setsid execs the machine in place: $! is the machine.
	setsid "$@" < /dev/null >> console.log 2>&1 &
	pid=$!
	if ! starttime "$pid"; then echo "the machine exited at once (see $d/console.log)" >&2; return 1; fi
	echo "$pid $st" > power.pid.new && mv -f power.pid.new power.pid || return 1
	[ "$dev" = pxe ] && rm -f boot
	echo "$(now) $dev $pid" >> boots.log
}

# power_off: a hard off (SIGTERM, SIGKILL after 5 s); the guest is not asked.
power_off() {
	if running; then
		kill -TERM "$pid" 2>/dev/null
		if ! waitgone 50; then
			kill -KILL "$pid" 2>/dev/null
			if ! waitgone 50; then echo "machine process $pid did not exit" >&2; return 1; fi
		fi
	fi
	rm -f power.pid
}

case $op in
get)
	for p in "$@"; do
		case $p in
		power) if running; then echo power:1; else echo power:0; fi ;;
		boot)
			b=
			read -r b 2>/dev/null < boot
			if [ "$b" = pxe ]; then echo boot:pxe; else echo boot:default; fi ;;
		*) echo "cannot get $p" >&2; exit 1 ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		p=$1 v=$2
		shift 2
		case $p in
		power) if [ "$v" = 1 ]; then power_on || exit 1; else power_off || exit 1; fi ;;
		reset) { power_off && power_on; } || exit 1 ;;
		shutdown) power_off || exit 1 ;;
		boot)
			if [ "$v" = pxe ]; then echo pxe > boot.new; else echo disk > boot.new; fi
			mv -f boot.new boot || exit 1 ;;
		identify) ;;
		*) echo "cannot set $p" >&2; exit 1 ;;
		esac
	done
	if [ $# -ne 0 ]; then echo "set wants PARM VALUE pairs" >&2; exit 1; fi ;;
*) echo "unsupported operation $op" >&2; exit 1 ;;
esac
exit 0
`

// hookFile is the script's name in a lab directory.
const hookFile = "bmc-hook"

// WriteHook writes HookScript as dir/bmc-hook (executable) and returns its
// path.
func WriteHook(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, hookFile)
	if err := fsutil.WriteFileAtomic(p, []byte(HookScript), 0o755); err != nil {
		return "", err
	}
	return p, nil
}

// shellSafe: s needs no quoting in a sh command line.
func shellSafe(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("/._+,:@=-", r):
		default:
			return false
		}
	}
	return true
}

// HookCommand is the chassis_control command for the machine in machineDir
// (ipmi_sim appends the MC address and runs it through sh).
func HookCommand(hook, machineDir string) string { return hook + " " + machineDir }

// WriteMachine saves a machine's command line per boot device (BootDisk,
// BootPXE) in dir as the hook reads them: start-DEVICE, one argument per
// line.
func WriteMachine(dir string, start map[string][]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, dev := range []string{BootDisk, BootPXE} {
		argv := start[dev]
		if len(argv) == 0 {
			return fmt.Errorf("no command for booting from %s", dev)
		}
		for _, a := range argv {
			if a == "" || strings.ContainsAny(a, "\n\x00") {
				return fmt.Errorf("machine argument %q: empty or with a line break", a)
			}
		}
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, "start-"+dev), []byte(strings.Join(argv, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}
