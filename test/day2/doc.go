// Package day2 holds the end-to-end tests of dodai's day-2 commands (etcd,
// node, health) against fake Talos nodes (test/faketalos) whose etcd
// members front the real etcd of a real kube-apiserver (test/kubetest): a
// cluster is installed with `dodai bootstrap`, then the day-2 commands run
// as a user runs them.
package day2
