package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docs/architecture.md is the map of the code: every Go package under
// internal/ and api/ has its row there, so a newcomer finds what each one
// is for and a new package is placed on purpose.
func TestArchitectureListsEveryPackage(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, top := range []string{"internal", "api"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				return nil
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			gofiles, _ := filepath.Glob(filepath.Join(path, "*.go"))
			if len(gofiles) == 0 {
				return nil
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			if !strings.Contains(string(doc), "`"+rel+"`") {
				t.Errorf("docs/architecture.md has no row for `%s`: add it to the package table (what it is for, where it sits)", rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
