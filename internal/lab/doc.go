// Package lab is a virtual rack on one Linux machine, for trying dodai
// without hardware and for dodai's own tests: a network namespace with a
// boot bridge, QEMU machines (UEFI or BIOS) with disks, a virtual BMC per
// machine (OpenIPMI's ipmi_sim, real IPMI v2.0 over LAN) whose
// chassis_control program (Hook) starts and stops the machine's QEMU process
// and honours "boot from the network once", and a cluster.yaml that
// describes them. Everything it starts is recorded (PIDs with start times,
// names) so that Down removes exactly that, never by name pattern.
package lab
