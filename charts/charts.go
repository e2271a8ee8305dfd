// Package charts embeds dodai's own Helm charts: small charts holding only
// custom resources (ClusterIssuers, KubeVirt/CDI CRs, LinstorCluster, Cluster
// API providers, the monitoring umbrella). Flux reads them from dodai's Git
// repository (GitRepository "dodai-charts", see docs/platform.md); the
// embedded copy lets tests render them and lets `dodai platform` publish them
// to a mirror.
package charts

import "embed"

// FS holds one directory per chart.
//
//go:embed all:cert-manager-issuers all:kubevirt all:kubevirt-cdi all:linstor all:capi-providers all:monitoring all:dodai
var FS embed.FS
