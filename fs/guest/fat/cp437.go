package fat

// cp437 maps the bytes of 8.3 names to runes: ASCII below 0x80, and IBM
// code page 437 above, the code page Linux and mtools assume by default.
var cp437 = func() (t [256]rune) {
	for i := range 128 {
		t[i] = rune(i)
	}
	copy(t[128:], []rune(cp437High))
	return t
}()

const cp437High = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0"
