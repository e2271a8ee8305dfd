package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DHCPLeaseSpec is one address binding of a dhcp-mode boot server.
type DHCPLeaseSpec struct {
	// Address is the IPv4 address; the object is named after it.
	// +kubebuilder:validation:Format=ipv4
	Address string `json:"address"`
	// MAC holding the address; empty when Declined.
	// +optional
	// +kubebuilder:validation:Pattern=`^(([0-9a-f]{2}:){5}[0-9a-f]{2})?$`
	MAC string `json:"mac,omitempty"`
	// Expires is when the binding ends (a released lease expires at once;
	// the address stays associated with its MAC until someone else takes it).
	Expires metav1.MicroTime `json:"expires"`
	// Declined marks an address a client reported in use (DHCPDECLINE): it
	// is not offered to anyone until Expires.
	// +optional
	Declined bool `json:"declined,omitempty"`
	// Server is the boot server (pod or host name) that wrote the binding.
	// +optional
	Server string `json:"server,omitempty"`
}

// DHCPLease is one dhcp-mode address, named after the address (e.g.
// 10.99.0.100). Boot servers create it or update it with the resourceVersion
// they read, so when several replicas race for one address the apiserver
// accepts exactly one of them.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:categories=dodai,shortName=dlease
// +kubebuilder:validation:XValidation:rule="self.metadata.name == self.spec.address",message="a DHCPLease is named after its address"
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="MAC",type=string,JSONPath=`.spec.mac`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.spec.expires`
// +kubebuilder:printcolumn:name="Declined",type=boolean,JSONPath=`.spec.declined`
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.spec.server`
type DHCPLease struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec DHCPLeaseSpec `json:"spec"`
}

// DHCPLeaseList is a list of DHCPLeases.
//
// +kubebuilder:object:root=true
type DHCPLeaseList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DHCPLease `json:"items"`
}
