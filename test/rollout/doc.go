// Package rollout holds the end-to-end tests of `dodai plan` and `dodai
// apply` against fake Talos nodes (test/faketalos, speaking the machinery
// gRPC API over TLS, with their Upgrade API, apply modes, MachineConfig and
// ExtensionStatus resources) whose kubelets register real Nodes in the real
// kube-apiserver of test/kubetest, with kube-controller-manager enforcing
// PodDisruptionBudgets. A cluster is installed with `dodai bootstrap`, then
// the cluster file is edited and plan and apply run as a user runs them.
// Every test here is skipped under -short.
package rollout
