package ext4

import (
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// foldName returns the form in which the kernel compares names in a
// casefold directory (utf8_casefold: canonical decomposition, then full
// case folding), and false for a name that is not valid UTF-8. The
// kernel compares such names byte for byte only (outside strict mode,
// where they cannot be created), so they match nothing once folded.
//
// The kernel's tables are Unicode 12.1; x/text's are newer, so names
// using characters assigned since fold the newer way.
func foldName(name string) (string, bool) {
	if !utf8.ValidString(name) {
		return "", false
	}
	return norm.NFD.String(cases.Fold().String(norm.NFD.String(name))), true
}
