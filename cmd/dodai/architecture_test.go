package main

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// The dependency rules of docs/architecture.md: only the command layer
// imports internal/cli and internal/tui, and only tests (and the test-only
// harness internal/incluster/incltest) import test/.
func TestDependenciesGoOneWay(t *testing.T) {
	const mod = "github.com/dodai-dev/dodai/"
	root := filepath.Join("..", "..")
	allowed := map[string][]string{
		mod + "internal/cli": {"cmd/dodai"},
		mod + "internal/tui": {"internal/cli"},
	}
	fset := token.NewFileSet()
	for _, top := range []string{"cmd", "internal", "api"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			rel = filepath.ToSlash(rel)
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if who, ok := allowed[p]; ok && !slices.Contains(who, rel) {
					t.Errorf("%s imports %s: only %v may (libraries take values, the command layer shows and asks)", path, p, who)
				}
				if strings.HasPrefix(p, mod+"test/") && rel != "internal/incluster/incltest" {
					t.Errorf("%s imports %s outside a test", path, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
