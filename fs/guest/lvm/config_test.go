package lvm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// dump renders a parsed tree compactly for comparisons.
func dump(n *node) string {
	var b strings.Builder
	var val func(v value)
	val = func(v value) {
		switch v.kind {
		case kindString:
			fmt.Fprintf(&b, "%q", v.s)
		case kindInt:
			fmt.Fprintf(&b, "%d", v.i)
		case kindFloat:
			fmt.Fprintf(&b, "f%s", v.s)
		case kindArray:
			b.WriteString("[")
			for i, e := range v.arr {
				if i > 0 {
					b.WriteString(",")
				}
				val(e)
			}
			b.WriteString("]")
		}
	}
	for _, c := range n.children {
		b.WriteString(c.key)
		if c.section {
			b.WriteString("{" + dump(c) + "}")
		} else {
			b.WriteString("=")
			val(c.val)
		}
		b.WriteString(";")
	}
	return b.String()
}

func TestConfigSyntax(t *testing.T) {
	for in, want := range map[string]string{
		"a = 1\nb = -2 c = +3":                     "a=1;b=-2;c=3;",
		`s = "x \"y\" \\ z"`:                       `s="x \"y\" \\ z";`,
		`s = 'single \n'`:                          `s="single \\n";`,
		"vg { x = [\"pv0\", 0,\n\"pv1\", 16] }":    `vg{x=["pv0",0,"pv1",16];};`,
		"e = []\nf = [1, 2,]":                      "e=[];f=[1,2];",
		"# comment\nv = 1 # trailing\n# end":       "v=1;",
		"x = 1.5\ny = bare":                        `x=f1.5;y="bare";`,
		"s { a = 1 }\ns { b = 2 }":                 "s{a=1;b=2;};",
		"k = 1\nk = 2":                             "k=2;",
		"v = 010":                                  "v=8;",
		"my-vg { lin-ear { id = \"x\" } }":         `my-vg{lin-ear{id="x";};};`,
		"a = 1\x00 garbage after the NUL { { {":    "a=1;",
		"\"quoted name\" { x = 1 }":                `quoted name{x=1;};`,
		"creation_time = 1700000000\t# 2023-11-14": "creation_time=1700000000;",
	} {
		root, err := parseConfig([]byte(in))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := dump(root); got != want {
			t.Errorf("%q:\n got %s\nwant %s", in, got, want)
		}
	}
	for _, in := range []string{
		"a {", "a = ", "a = [1, 2", "= 1", "a b", "a = {", "a = 99999999999999999999", "{}", `"" = 1`,
		"a = 1\na { }", "a { }\na = 1", "a = -", "f = [1 2]", "a = [x y]", strings.Repeat("a {", 40) + strings.Repeat("}", 40),
	} {
		if _, err := parseConfig([]byte(in)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%.40q: %v, want ErrCorrupt", in, err)
		}
	}
}

func TestConfigItemLimit(t *testing.T) {
	text := []byte("a = [" + strings.Repeat("1,", 999) + "]\nb { c = 1 }")
	if _, err := parseConfigLimit(text, 1003); err != nil {
		t.Fatalf("within the limit: %v", err)
	}
	for _, limit := range []int{1002, 500} {
		if _, err := parseConfigLimit(text, limit); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "items") {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
}

func TestParseMetadataErrors(t *testing.T) {
	good := string(twoPVs().Text())
	for name, edit := range map[string][2]string{
		"no vg":           {"my-vg {", "# my-vg {"},
		"no extent size":  {"extent_size = 2048", "extent_sizes = 2048"},
		"zero extents":    {"extent_size = 2048", "extent_size = 0"},
		"huge pe_count":   {"pe_count = 15", "pe_count = 9223372036854775807"},
		"segment count":   {"segment_count = 2", "segment_count = 3"},
		"negative start":  {"start_extent = 2", "start_extent = -2"},
		"stripe array":    {`"pv0", 5,`, `"pv0",`},
		"many stripes":    {"stripe_count = 2", "stripe_count = 200"},
		"bad VG name":     {"my-vg {", "my/vg {"},
		"bad LV name":     {"lin {", "-lin {"},
		"thin without id": {`stripe_count = 1`, `stripe_count = 1` + "\n" + `type = "thin"` + "\nthin_pool = \"lin\""},
	} {
		text := strings.Replace(good, edit[0], edit[1], 1)
		if text == good {
			t.Fatalf("%s: edit does not apply", name)
		}
		if vg, err := ParseMetadata([]byte(text)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, %+v", name, err, vg)
		}
	}
	vg, err := ParseMetadata([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	// Parsed alone, every LV misses its PVs.
	for _, lv := range vg.LVs {
		if !errors.Is(lv.Err(), ErrMissingPV) {
			t.Errorf("%s: %v", lv.Name, lv.Err())
		}
	}
}
