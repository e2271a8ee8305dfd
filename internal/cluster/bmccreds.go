package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// BMCCredentialsFile holds BMC user names and passwords, beside cluster.yaml
// but never in it. It must not be readable by group or others (0600):
//
//	default:            # used for every node without its own entry
//	  username: admin
//	  password: secret
//	nodes:
//	  cp1:
//	    username: root
//	    password: calvin
const BMCCredentialsFile = "bmc-credentials.yaml"

// Environment variables that supply BMC credentials (read by the CLI and
// passed in, never read by this package): DODAI_BMC_USERNAME and
// DODAI_BMC_PASSWORD for every node, DODAI_BMC_<NODE>_USERNAME and
// DODAI_BMC_<NODE>_PASSWORD for one (node name upper-cased, '-' as '_').
const (
	EnvBMCUsername = "DODAI_BMC_USERNAME"
	EnvBMCPassword = "DODAI_BMC_PASSWORD"
)

// BMCCredential is one user name and password.
type BMCCredential struct {
	Username string `json:"-"`
	Password string `json:"-"`
}

// String never shows the password.
func (c BMCCredential) String() string { return c.Username + ":<redacted>" }

// BMCCredentials is a decoded bmc-credentials.yaml.
type BMCCredentials struct {
	// File is the path as opened (for messages).
	File    string
	Default *partialCredential
	Nodes   map[string]*partialCredential
}

type partialCredential struct {
	username, password *string
	pos                Pos
}

// EnvNodeName is the form of a node name inside environment variable names.
func EnvNodeName(node string) string {
	return strings.ToUpper(strings.ReplaceAll(node, "-", "_"))
}

// LoadBMCCredentials reads DIR/bmc-credentials.yaml. A missing file gives
// empty credentials and no problem (environment variables may supply them).
func LoadBMCCredentials(dir string) (*BMCCredentials, Problems) {
	file := At(dir).BMCCredentials()
	c := &BMCCredentials{File: file, Nodes: map[string]*partialCredential{}}
	fi, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, Problems{{File: file, Message: err.Error()}}
	}
	var probs Problems
	if fi.Mode().Perm()&0o077 != 0 {
		probs = append(probs, Problem{File: file, Message: fmt.Sprintf("mode %04o lets group or others read BMC passwords: chmod 600 %s", fi.Mode().Perm(), file)})
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return c, append(probs, Problem{File: file, Message: err.Error()})
	}
	return c, append(probs, c.parse(raw)...)
}

// ParseBMCCredentials decodes the content of a credentials file (no mode check).
func ParseBMCCredentials(file string, raw []byte) (*BMCCredentials, Problems) {
	c := &BMCCredentials{File: file, Nodes: map[string]*partialCredential{}}
	return c, c.parse(raw)
}

func (c *BMCCredentials) parse(raw []byte) Problems {
	var probs Problems
	add := func(n *yaml.Node, path, format string, args ...any) {
		probs = append(probs, Problem{File: c.File, Line: n.Line, Column: n.Column, Path: path, Message: fmt.Sprintf(format, args...)})
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return Problems{syntaxProblem(c.File, err)}
	}
	if len(doc.Content) == 0 {
		return nil // empty file: no credentials
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		add(root, "", "expected a mapping with default and nodes")
		return probs
	}
	cred := func(n *yaml.Node, path string) *partialCredential {
		if n.Kind != yaml.MappingNode {
			add(n, path, "expected a mapping with username and password, got %s", describe(n))
			return nil
		}
		pc := &partialCredential{pos: Pos{n.Line, n.Column}}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				add(v, path+"."+k.Value, "expected a string")
				continue
			}
			s := v.Value
			switch k.Value {
			case "username":
				pc.username = &s
			case "password":
				if s == "" {
					add(v, path+".password", "is empty")
					continue
				}
				pc.password = &s
			default:
				add(k, path+"."+k.Value, "unknown field (want username and password)")
			}
		}
		return pc
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "default":
			c.Default = cred(v, "default")
		case "nodes":
			if v.Kind != yaml.MappingNode {
				add(v, "nodes", "expected a mapping of node names, got %s", describe(v))
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				nk, nv := v.Content[j], v.Content[j+1]
				if _, dup := c.Nodes[nk.Value]; dup {
					add(nk, "nodes."+nk.Value, "is set twice")
					continue
				}
				if pc := cred(nv, "nodes."+nk.Value); pc != nil {
					pc.pos = Pos{nk.Line, nk.Column}
					c.Nodes[nk.Value] = pc
				}
			}
		default:
			add(k, k.Value, "unknown field (want default and nodes)")
		}
	}
	return probs
}

// ResolveBMCCredentials finds the credentials of every node that has a bmc.
// Each of user name and password is taken from, first to last:
// DODAI_BMC_<NODE>_*, the file's nodes.<node>, DODAI_BMC_*, the file's
// default. A node whose password or user name is found nowhere is a problem
// located at its bmc field in cluster.yaml; a nodes entry for a node that
// doesn't exist is a warning located in the credentials file.
func ResolveBMCCredentials(src *Source, creds *BMCCredentials, env func(string) (string, bool)) (map[string]BMCCredential, Problems) {
	if creds == nil {
		creds = &BMCCredentials{File: src.Layout().BMCCredentials(), Nodes: map[string]*partialCredential{}}
	}
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	var probs Problems
	out := map[string]BMCCredential{}
	known := map[string]bool{}
	for i, n := range src.Cluster.Spec.Nodes {
		known[n.Name] = true
		if n.BMC == nil {
			continue
		}
		pick := func(field string, get func(*partialCredential) *string) (string, bool) {
			if v, ok := env("DODAI_BMC_" + EnvNodeName(n.Name) + "_" + field); ok {
				return v, true
			}
			if pc := creds.Nodes[n.Name]; pc != nil && get(pc) != nil {
				return *get(pc), true
			}
			if v, ok := env("DODAI_BMC_" + field); ok {
				return v, true
			}
			if creds.Default != nil && get(creds.Default) != nil {
				return *get(creds.Default), true
			}
			return "", false
		}
		user, okU := pick("USERNAME", func(p *partialCredential) *string { return p.username })
		pass, okP := pick("PASSWORD", func(p *partialCredential) *string { return p.password })
		if okP && pass == "" {
			okP = false
		}
		if !okU || !okP {
			var missing []string
			if !okU {
				missing = append(missing, "username")
			}
			if !okP {
				missing = append(missing, "password")
			}
			e := EnvNodeName(n.Name)
			probs = append(probs, src.Problem(Error, fmt.Sprintf("spec.nodes[%d].bmc", i),
				"no BMC %s for node %q: add nodes.%s (or default) to %s, or set DODAI_BMC_%s_USERNAME and DODAI_BMC_%s_PASSWORD (or DODAI_BMC_USERNAME/DODAI_BMC_PASSWORD)",
				strings.Join(missing, " or "), n.Name, n.Name, BMCCredentialsFile, e, e))
			continue
		}
		out[n.Name] = BMCCredential{Username: user, Password: pass}
	}
	names := make([]string, 0, len(creds.Nodes))
	for name := range creds.Nodes {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !known[name] {
			pc := creds.Nodes[name]
			probs = append(probs, Problem{File: creds.File, Line: pc.pos.Line, Column: pc.pos.Column, Path: "nodes." + name,
				Message: fmt.Sprintf("there is no node %q in %s", name, FileName), Severity: Warning})
		}
	}
	return out, probs
}
