package tftp

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// resolvePath turns a requested file name into a slash-separated path
// relative to the server root, or refuses it.
//
// Rules (docs/tftp.md): leading slashes are stripped, because PXE firmware
// and DHCP boot-file fields often say "/undionly.kpxe" and mean the TFTP
// root; empty and "." components are dropped ("a//./b" is "a/b"); a ".."
// component anywhere, a backslash, a NUL or any other control character is
// refused. The result is then opened through os.Root, which additionally
// refuses symlinks that lead outside the root.
func resolvePath(name string) (string, error) {
	if name == "" {
		return "", errors.New("access violation: empty file name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '\\':
			return "", fmt.Errorf("access violation: %q contains a backslash", name)
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("access violation: %q contains a control character", name)
		}
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("access violation: %q contains \"..\"", name)
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("access violation: %q names the root directory", name)
	}
	rel := strings.Join(parts, "/")
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("access violation: %q is not a local path", name)
	}
	return rel, nil
}
