package lvm

import (
	"fmt"
	"strconv"
	"strings"
)

// The metadata text is LVM's config syntax (libdm/libdm-config.c):
//
//	name {                       a section
//	    key = 42                 an integer
//	    key = "text \"quoted\""  a string, \" and \\ escaped
//	    key = ["pv0", 0]         an array of values
//	}                            # comments run to the end of the line
//
// Section names and keys are bare words. The parser is a small
// recursive descent bounded by maxDepth; every node points into its own
// copy of the text, so the tree is at most a few times the text's size.

const (
	maxDepth = 32
	// maxItems bounds the sections, keys and values of one text, so a
	// text of many tiny values cannot cost many times its size.
	maxItems = 1 << 20
)

// node is a section (children set) or a key with a value.
type node struct {
	key      string
	children []*node
	index    map[string]*node // children by key; sections with the same name merge, as in LVM
	section  bool
	val      value
}

type valueKind int

const (
	kindString valueKind = iota + 1
	kindInt
	kindFloat
	kindArray
)

type value struct {
	kind valueKind
	s    string
	i    int64
	arr  []value
}

type token int

const (
	tEOF token = iota
	tSectionB
	tSectionE
	tArrayB
	tArrayE
	tComma
	tEq
	tString // "..." with escapes, or '...'
	tInt
	tFloat
	tIdent // a bare word where a name goes
	tBare  // a bare word where a value goes
)

type parser struct {
	text   string
	pos    int    // start of the next token
	t      token  // current token
	tok    string // its text
	line   int
	quoted bool // tString came in double quotes
	items  int  // sections, keys and values so far
	limit  int  // of items
}

// parseConfig parses metadata text into a tree whose root is an unnamed
// section.
func parseConfig(text []byte) (*node, error) { return parseConfigLimit(text, maxItems) }

func parseConfigLimit(text []byte, limit int) (*node, error) {
	p := &parser{text: string(text), line: 1, limit: limit}
	root := &node{section: true}
	p.next(tEOF)
	for p.t != tEOF {
		if err := p.section(root, 1); err != nil {
			return nil, err
		}
	}
	return root, nil
}

func (p *parser) errorf(format string, a ...any) error {
	return fmt.Errorf("lvm: metadata text line %d: %s: %w", p.line, fmt.Sprintf(format, a...), ErrCorrupt)
}

// next reads the token after prev; a digit or sign starts a number only
// where a value may follow (after "=", "[" or ","), as in LVM.
func (p *parser) next(prev token) {
	values := prev == tEq || prev == tArrayB || prev == tComma
	s := p.text
	i := p.pos
	for i < len(s) {
		c := s[i]
		if c == '#' {
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		}
		if c == '\n' {
			p.line++
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f' {
			break
		}
		i++
	}
	if i >= len(s) || s[i] == 0 {
		p.t, p.tok, p.pos = tEOF, "", len(s)
		return
	}
	start := i
	e := i + 1
	p.quoted = false
	switch c := s[i]; {
	case c == '{':
		p.t = tSectionB
	case c == '}':
		p.t = tSectionE
	case c == '[':
		p.t = tArrayB
	case c == ']':
		p.t = tArrayE
	case c == ',':
		p.t = tComma
	case c == '=':
		p.t = tEq
	case c == '"':
		p.t, p.quoted = tString, true
		for e < len(s) && s[e] != 0 && s[e] != '"' {
			if s[e] == '\\' && e+1 < len(s) && s[e+1] != 0 {
				e++
			}
			if s[e] == '\n' {
				p.line++
			}
			e++
		}
		if e < len(s) && s[e] == '"' {
			e++
		}
	case c == '\'':
		p.t = tString
		for e < len(s) && s[e] != 0 && s[e] != '\'' {
			e++
		}
		if e < len(s) && s[e] == '\'' {
			e++
		}
	case values && (c == '.' || c == '+' || c == '-' || c >= '0' && c <= '9'):
		p.t = tInt
		if c == '.' {
			p.t = tFloat
		}
		for ; e < len(s); e++ {
			if s[e] == '.' && p.t != tFloat {
				p.t = tFloat
				continue
			}
			if s[e] < '0' || s[e] > '9' {
				break
			}
		}
	default:
		p.t = tIdent
		if values {
			p.t = tBare
		}
		for e < len(s) && !strings.ContainsRune(" \t\n\r\v\f#={}", rune(s[e])) && s[e] != 0 {
			e++
		}
	}
	p.tok, p.pos = s[start:e], e
}

func (p *parser) expect(t token, what string) error {
	if p.t != t {
		return p.errorf("%s expected, found %q", what, p.tok)
	}
	p.next(t)
	return nil
}

// section parses "name { ... }" or "name = value" into parent.
func (p *parser) section(parent *node, depth int) error {
	if depth > maxDepth {
		return p.errorf("sections nested more than %d deep", maxDepth)
	}
	if p.items++; p.items > p.limit {
		return p.errorf("more than %d items", p.limit)
	}
	var name string
	switch p.t {
	case tString:
		name = p.unquote()
	case tIdent:
		name = p.tok
	default:
		return p.errorf("name expected, found %q", p.tok)
	}
	if name == "" {
		return p.errorf("empty name")
	}
	p.next(p.t)
	n := parent.child(name)
	if p.t == tSectionB {
		if n.val.kind != 0 {
			return p.errorf("%s is both a value and a section", name)
		}
		n.section = true
		p.next(tSectionB)
		for p.t != tSectionE {
			if p.t == tEOF {
				return p.errorf("section %s not closed", name)
			}
			if err := p.section(n, depth+1); err != nil {
				return err
			}
		}
		p.next(tSectionE)
		return nil
	}
	if err := p.expect(tEq, "'=' or '{' after "+name); err != nil {
		return err
	}
	if n.section {
		return p.errorf("%s is both a section and a value", name)
	}
	v, err := p.value()
	if err != nil {
		return err
	}
	n.val = v // a repeated key keeps its last value, as in LVM
	return nil
}

func (p *parser) value() (value, error) {
	if p.t != tArrayB {
		return p.scalar()
	}
	p.next(tArrayB)
	v := value{kind: kindArray}
	for p.t != tArrayE {
		e, err := p.scalar()
		if err != nil {
			return value{}, err
		}
		v.arr = append(v.arr, e)
		if p.t == tComma {
			p.next(tComma)
		}
	}
	p.next(tArrayE)
	return v, nil
}

func (p *parser) scalar() (value, error) {
	if p.items++; p.items > p.limit {
		return value{}, p.errorf("more than %d items", p.limit)
	}
	var v value
	switch p.t {
	case tInt:
		i, err := strconv.ParseInt(p.tok, 0, 64)
		if err != nil {
			return value{}, p.errorf("bad integer %q", p.tok)
		}
		v = value{kind: kindInt, i: i}
	case tFloat:
		v = value{kind: kindFloat, s: p.tok}
	case tString:
		v = value{kind: kindString, s: p.unquote()}
	case tBare:
		v = value{kind: kindString, s: p.tok}
	default:
		return value{}, p.errorf("value expected, found %q", p.tok)
	}
	p.next(p.t)
	return v, nil
}

// unquote strips the quotes of a string token and, for double quotes,
// undoes LVM's escaping of '"' and '\'.
func (p *parser) unquote() string {
	s := p.tok[1:]
	if strings.HasSuffix(s, p.tok[:1]) {
		s = s[:len(s)-1]
	}
	if !p.quoted || !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// child finds or adds the child called key.
func (n *node) child(key string) *node {
	if c, ok := n.index[key]; ok {
		return c
	}
	if n.index == nil {
		n.index = map[string]*node{}
	}
	c := &node{key: key}
	n.index[key] = c
	n.children = append(n.children, c)
	return c
}

// get returns the child called key, or nil.
func (n *node) get(key string) *node {
	if n == nil {
		return nil
	}
	return n.index[key]
}

// sections returns the children that are sections, in text order.
func (n *node) sections() []*node {
	if n == nil {
		return nil
	}
	var out []*node
	for _, c := range n.children {
		if c.section {
			out = append(out, c)
		}
	}
	return out
}

// str returns the string value of key.
func (n *node) str(key string) (string, bool) {
	c := n.get(key)
	if c == nil || c.val.kind != kindString {
		return "", false
	}
	return c.val.s, true
}

// int returns the integer value of key.
func (n *node) int(key string) (int64, bool) {
	c := n.get(key)
	if c == nil || c.val.kind != kindInt {
		return 0, false
	}
	return c.val.i, true
}

// strings returns the array of strings of key ("status = [...]").
func (n *node) strings(key string) []string {
	c := n.get(key)
	if c == nil {
		return nil
	}
	if c.val.kind == kindString {
		return []string{c.val.s}
	}
	var out []string
	for _, v := range c.val.arr {
		if v.kind == kindString {
			out = append(out, v.s)
		}
	}
	return out
}
