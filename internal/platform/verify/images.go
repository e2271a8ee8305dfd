package verify

import (
	"sort"
	"strings"

	"github.com/distribution/reference"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Image is one container image the rendered platform references.
type Image struct {
	Ref string `json:"image"`
	// Releases that reference it ("namespace/name").
	Releases []string `json:"releases"`
	// Warning says why pulling it will fail (a registry or repository
	// known to be gone), empty when nothing is known against it.
	Warning string `json:"warning,omitempty"`
}

// goneRegistries maps a normalized image name prefix to why its pulls fail.
// Kept short and sourced: only registries whose owners announced the end.
var goneRegistries = []struct{ prefix, why string }{
	{"k8s.gcr.io/", "k8s.gcr.io was frozen in 2023 and is shut down: use registry.k8s.io"},
	{"gcr.io/google_containers/", "gcr.io/google_containers is frozen: use registry.k8s.io"},
	{"docker.io/bitnami/", "Bitnami moved its versioned images to docker.io/bitnamilegacy in August 2025; docker.io/bitnami keeps only a few latest tags"},
}

// GoneWarning returns why pulling ref fails, or "" when nothing is known.
func GoneWarning(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	name := ref
	if err == nil {
		name = n.String()
	}
	for _, g := range goneRegistries {
		if strings.HasPrefix(name, g.prefix) {
			return g.why
		}
	}
	return ""
}

// Images lists every image the rendered releases reference: containers,
// init and ephemeral containers of every pod template (Deployments,
// DaemonSets, Jobs, CronJobs, Pods, and custom resources that embed pod
// templates), and environment variables or arguments that name images for
// operators to deploy later (RELATED_IMAGE_*, *_IMAGE, --*-image=...).
func (rep *Report) Images() []Image {
	by := map[string]map[string]bool{}
	add := func(ref, rel string) {
		ref = strings.TrimSpace(ref)
		if ref == "" || strings.ContainsAny(ref, " {}$") {
			return
		}
		if _, err := reference.ParseNormalizedNamed(ref); err != nil {
			return
		}
		if by[ref] == nil {
			by[ref] = map[string]bool{}
		}
		by[ref][rel] = true
	}
	for _, vr := range rep.Releases {
		rel := vr.Namespace + "/" + vr.Name
		for _, ro := range vr.objs {
			for _, ref := range ObjectImages(ro.Obj) {
				add(ref, rel)
			}
		}
	}
	var out []Image
	for ref, rels := range by {
		im := Image{Ref: ref, Warning: GoneWarning(ref)}
		for r := range rels {
			im.Releases = append(im.Releases, r)
		}
		sort.Strings(im.Releases)
		out = append(out, im)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out
}

// ObjectImages returns the image references in one object.
func ObjectImages(u *unstructured.Unstructured) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			for k, x := range t {
				switch k {
				case "containers", "initContainers", "ephemeralContainers":
					if l, ok := x.([]any); ok {
						for _, c := range l {
							cm, _ := c.(map[string]any)
							if img, ok := cm["image"].(string); ok {
								out = append(out, img)
							}
							out = append(out, containerImageHints(cm)...)
						}
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range t {
				walk(x)
			}
		}
	}
	walk(u.Object)
	return out
}

// containerImageHints: images an operator container is told to deploy.
func containerImageHints(c map[string]any) []string {
	var out []string
	envs, _ := c["env"].([]any)
	for _, e := range envs {
		em, _ := e.(map[string]any)
		name, _ := em["name"].(string)
		val, _ := em["value"].(string)
		u := strings.ToUpper(name)
		if val != "" && (strings.HasPrefix(u, "RELATED_IMAGE") || strings.HasSuffix(u, "_IMAGE") || strings.HasSuffix(u, "IMAGE_NAME")) && strings.Contains(val, "/") {
			out = append(out, val)
		}
	}
	for _, key := range []string{"args", "command"} {
		args, _ := c[key].([]any)
		for _, a := range args {
			s, _ := a.(string)
			if i := strings.Index(s, "-image="); i > 0 && strings.HasPrefix(s, "--") {
				if v := s[i+len("-image="):]; strings.Contains(v, "/") {
					out = append(out, v)
				}
			}
		}
	}
	return out
}
