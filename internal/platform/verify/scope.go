package verify

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dodai-dev/dodai/internal/platform/install"
)

// clusterScoped are the built-in kinds that live outside namespaces.
var clusterScoped = map[schema.GroupKind]bool{}

func init() {
	for _, gk := range []string{
		"Namespace", "Node", "PersistentVolume", "ComponentStatus",
		"ClusterRole.rbac.authorization.k8s.io", "ClusterRoleBinding.rbac.authorization.k8s.io",
		"CustomResourceDefinition.apiextensions.k8s.io", "APIService.apiregistration.k8s.io",
		"StorageClass.storage.k8s.io", "CSIDriver.storage.k8s.io", "CSINode.storage.k8s.io",
		"VolumeAttachment.storage.k8s.io", "VolumeAttributesClass.storage.k8s.io",
		"PriorityClass.scheduling.k8s.io", "RuntimeClass.node.k8s.io",
		"IngressClass.networking.k8s.io", "IPAddress.networking.k8s.io", "ServiceCIDR.networking.k8s.io",
		"ValidatingWebhookConfiguration.admissionregistration.k8s.io", "MutatingWebhookConfiguration.admissionregistration.k8s.io",
		"ValidatingAdmissionPolicy.admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding.admissionregistration.k8s.io",
		"MutatingAdmissionPolicy.admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding.admissionregistration.k8s.io",
		"FlowSchema.flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration.flowcontrol.apiserver.k8s.io",
		"CertificateSigningRequest.certificates.k8s.io", "ClusterTrustBundle.certificates.k8s.io",
		"DeviceClass.resource.k8s.io", "PodSecurityPolicy.policy",
	} {
		clusterScoped[schema.ParseGroupKind(gk)] = true
	}
}

// scopes answers "is this kind namespaced?": from the cluster's discovery
// when there is one, else from the built-in list and the rendered CRDs.
type scopes struct {
	ap  *install.Applier
	crd map[schema.GroupKind]bool // true: namespaced
}

func newScopes(ap *install.Applier, crdsOf map[string][]*unstructured.Unstructured) *scopes {
	s := &scopes{ap: ap, crd: map[schema.GroupKind]bool{}}
	for _, cs := range crdsOf {
		for _, c := range cs {
			sc, _, _ := unstructured.NestedString(c.Object, "spec", "scope")
			s.crd[crdGroupKind(c)] = sc != "Cluster"
		}
	}
	return s
}

func (s *scopes) namespaced(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	if ns, ok := s.crd[gvk.GroupKind()]; ok {
		return ns
	}
	if clusterScoped[gvk.GroupKind()] {
		return false
	}
	if s.ap != nil && !builtinGroup(gvk.Group) {
		if ns, err := s.ap.Namespaced(gvk); err == nil {
			return ns
		}
	}
	return true
}
