package config

import (
	"slices"

	"go.yaml.in/yaml/v3"
)

// parseYAML turns the file into the nested map koanf merges, recording the
// line of every key in prov. The file is walked as a yaml.Node tree instead
// of going through koanf's YAML parser so that errors carry line numbers,
// duplicate keys are refused, dotted server names stay single keys, and
// hostile input (alias bombs, deep nesting) fails cleanly.
func parseYAML(file string, data []byte, prov provenance) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: file, Err: &valueError{msg: err.Error(), target: ErrInvalidValue}}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return map[string]any{}, nil // empty file: defaults only
	}
	c := &yconv{file: file, prov: prov, budget: 100_000}
	v, err := c.node(doc.Content[0], nil, 0)
	if err != nil {
		return nil, err
	}
	switch m := v.(type) {
	case nil:
		return map[string]any{}, nil
	case map[string]any:
		return m, nil
	}
	return nil, &Error{File: file, Line: doc.Content[0].Line, Err: invalidf("the top level must be a mapping with \"global\" and \"servers\"")}
}

type yconv struct {
	file   string
	prov   provenance
	budget int
}

const maxYAMLDepth = 32

func (c *yconv) fail(n *yaml.Node, format string, args ...any) error {
	return &Error{File: c.file, Line: n.Line, Err: invalidf(format, args...)}
}

func (c *yconv) node(n *yaml.Node, path []string, depth int) (any, error) {
	c.budget--
	if c.budget < 0 {
		return nil, c.fail(n, "document too large or too many alias expansions")
	}
	if depth > maxYAMLDepth {
		return nil, c.fail(n, "nesting too deep")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.node(n.Content[0], path, depth+1)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, c.fail(n, "unresolved alias")
		}
		return c.node(n.Alias, path, depth+1)
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return nil, nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := c.node(e, path, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		return c.mapping(n, path, depth)
	}
	return nil, c.fail(n, "unsupported YAML node")
}

func (c *yconv) mapping(n *yaml.Node, path []string, depth int) (map[string]any, error) {
	out := map[string]any{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		for kn.Kind == yaml.AliasNode && kn.Alias != nil && depth < maxYAMLDepth {
			kn = kn.Alias
			depth++
		}
		if kn.Kind != yaml.ScalarNode {
			return nil, c.fail(kn, "mapping keys must be plain names")
		}
		if kn.ShortTag() == "!!merge" {
			merges = append(merges, vn)
			continue
		}
		key := kn.Value
		if _, dup := out[key]; dup {
			return nil, c.fail(kn, "key %q is defined twice", key)
		}
		sub := append(slices.Clip(path), key)
		c.prov.set(sub, source{file: c.file, line: kn.Line})
		v, err := c.node(vn, sub, depth+1)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	// YAML merge keys (<<: *defaults) supply keys the mapping does not set
	// itself; handy to share options between servers.
	for _, mn := range merges {
		v, err := c.node(mn, path, depth+1)
		if err != nil {
			return nil, err
		}
		var srcs []map[string]any
		switch x := v.(type) {
		case map[string]any:
			srcs = append(srcs, x)
		case []any:
			for _, e := range x {
				m, ok := e.(map[string]any)
				if !ok {
					return nil, c.fail(mn, "a merge key (<<) needs a mapping or a list of mappings")
				}
				srcs = append(srcs, m)
			}
		default:
			return nil, c.fail(mn, "a merge key (<<) needs a mapping or a list of mappings")
		}
		for _, m := range srcs {
			for k, val := range m {
				if _, set := out[k]; !set {
					out[k] = val
					c.prov.set(append(slices.Clip(path), k), source{file: c.file, line: mn.Line})
				}
			}
		}
	}
	return out, nil
}
