package stream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// needTool skips when a tool is missing, or fails under CI=true.
func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed", name)
		}
		t.Skipf("%s is not installed", name)
	}
}

// piece is one call: data written, zeros, or a frame made elsewhere that
// stands for data.
type piece struct {
	data  []byte
	zeros int64
	frame []byte
}

func sample(seed int64, chunk int) ([]piece, []byte) {
	r := rand.New(rand.NewSource(seed))
	text := bytes.Repeat([]byte("cairn keeps every point of a disk; "), chunk/8)
	rnd := make([]byte, chunk/3)
	r.Read(rnd)
	ps := []piece{
		{data: text[:chunk/2+17]},
		{zeros: int64(3*chunk + 5)}, // crosses a boundary, then whole zero chunks
		{data: rnd},
		{zeros: int64(chunk - len(rnd))},
		{zeros: int64(2 * chunk)}, // aligned whole zero chunks
		{data: text[:chunk]},
		{data: []byte("tail")},
	}
	return ps, contents(ps)
}

// contents returns the bytes a stream of ps decodes to.
func contents(ps []piece) []byte {
	var all []byte
	for _, p := range ps {
		if p.data != nil {
			all = append(all, p.data...)
		} else {
			all = append(all, make([]byte, p.zeros)...)
		}
	}
	return all
}

func compress(t *testing.T, o Options, ps []piece) []byte {
	t.Helper()
	var out bytes.Buffer
	w, err := NewWriter(&out, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		var err error
		switch {
		case p.frame != nil:
			err = w.WriteFrame(p.frame)
		case p.data != nil:
			_, err = w.Write(p.data)
		default:
			err = w.Zeros(p.zeros)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Written() != int64(out.Len()) {
		t.Errorf("Written %d, got %d bytes", w.Written(), out.Len())
	}
	return out.Bytes()
}

func goDecode(t *testing.T, codec string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch codec {
	case Zstd:
		d, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r = d
	case LZ4:
		r = lz4.NewReader(bytes.NewReader(b))
	case Gzip:
		g, err := gzip.NewReader(bytes.NewReader(b)) // multistream by default
		if err != nil {
			t.Fatal(err)
		}
		r = g
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s decode: %v", codec, err)
	}
	return got
}

// toolDecode runs "codec -d -c" on b, as a user restores a stream.
func toolDecode(t *testing.T, codec string, b []byte) []byte {
	t.Helper()
	needTool(t, codec)
	cmd := exec.Command(codec, "-d", "-c")
	cmd.Stdin = bytes.NewReader(b)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s -d: %v: %s", codec, err, errb.String())
	}
	return out.Bytes()
}

func TestRoundTrip(t *testing.T) {
	const chunk = 64 << 10
	ps, want := sample(1, chunk)
	for _, codec := range []string{Zstd, LZ4, Gzip} {
		for _, level := range []int{0, 1} {
			t.Run(fmt.Sprintf("%s-%d", codec, level), func(t *testing.T) {
				b := compress(t, Options{Codec: codec, Level: level, ChunkSize: chunk, Workers: 3}, ps)
				if got := goDecode(t, codec, b); !bytes.Equal(got, want) {
					t.Fatalf("Go decoder: %d bytes, want %d", len(got), len(want))
				}
				if got := toolDecode(t, codec, b); !bytes.Equal(got, want) {
					t.Fatalf("%s -d: %d bytes, want %d", codec, len(got), len(want))
				}
				if len(b) >= len(want)/2 {
					t.Errorf("%d bytes from %d: zeros and text should compress", len(b), len(want))
				}
			})
		}
	}
}

// Frames made elsewhere land between compressed chunks as they are, and
// the stream still decodes to everything in order: a partial chunk before
// a frame is closed first.
func TestWriteFrame(t *testing.T) {
	needTool(t, "zstd")
	const chunk = 64 << 10
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	text := bytes.Repeat([]byte("a block the vault compressed already; "), 2000)
	other := bytes.Repeat([]byte("another one, shorter; "), 1000)
	f1, f2 := enc.EncodeAll(text, nil), enc.EncodeAll(other, nil)
	ps := []piece{
		{data: []byte("head, a partial chunk")},
		{frame: f1, data: text},
		{zeros: 5000},
		{frame: f2, data: other},
		{frame: f1, data: text},
		{zeros: 3 * chunk},
		{data: text[:chunk+100]},
		{frame: f2, data: other},
	}
	want := contents(ps)
	b := compress(t, Options{Codec: Zstd, ChunkSize: chunk, Workers: 3}, ps)
	if got := goDecode(t, Zstd, b); !bytes.Equal(got, want) {
		t.Fatalf("Go decoder: %d bytes, want %d", len(got), len(want))
	}
	if got := toolDecode(t, Zstd, b); !bytes.Equal(got, want) {
		t.Fatalf("zstd -d: %d bytes, want %d", len(got), len(want))
	}
	if n := bytes.Count(b, f1); n != 2 {
		t.Errorf("frame found %d times in the stream, want 2 copies as they are", n)
	}
}

func TestEmptyAndExact(t *testing.T) {
	const chunk = 4096
	for _, codec := range []string{Zstd, LZ4, Gzip} {
		if got := toolDecode(t, codec, compress(t, Options{Codec: codec, ChunkSize: chunk}, nil)); len(got) != 0 {
			t.Errorf("%s: empty stream decodes to %d bytes", codec, len(got))
		}
		data := bytes.Repeat([]byte{7}, 2*chunk)
		if got := toolDecode(t, codec, compress(t, Options{Codec: codec, ChunkSize: chunk}, []piece{{data: data}})); !bytes.Equal(got, data) {
			t.Errorf("%s: exact chunks decode to %d bytes", codec, len(got))
		}
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{{Codec: "zlib"}, {Codec: Zstd, Level: 23}, {Codec: LZ4, Level: 10}, {Codec: Gzip, Level: -1}} {
		if _, err := NewWriter(io.Discard, o); !errors.Is(err, ErrCodec) {
			t.Errorf("%+v: %v, want ErrCodec", o, err)
		}
	}
}

type failWriter struct{ left int }

var errFull = errors.New("disk full")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.left < len(p) {
		return 0, errFull
	}
	f.left -= len(p)
	return len(p), nil
}

// TestWriteError checks a failing destination surfaces from later writes
// or Close, and that Close still stops every goroutine.
func TestWriteError(t *testing.T) {
	w, err := NewWriter(&failWriter{left: 100}, Options{Codec: Zstd, ChunkSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4096)
	rand.New(rand.NewSource(2)).Read(data)
	var werr error
	for i := 0; i < 100 && werr == nil; i++ {
		_, werr = w.Write(data)
	}
	cerr := w.Close()
	if !errors.Is(werr, errFull) && !errors.Is(cerr, errFull) {
		t.Fatalf("write %v, close %v: want the destination's error", werr, cerr)
	}
	if _, err := w.Write(data); !errors.Is(err, ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func BenchmarkZstd(b *testing.B) {
	data := bytes.Repeat([]byte("cairn keeps every point of a disk; "), 1<<20/8)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		w, _ := NewWriter(io.Discard, Options{Codec: Zstd})
		w.Write(data)
		w.Close()
	}
}

// Whole chunks of zeros are one hand-made frame of RLE blocks, which the
// Go decoder and the zstd tool both read back as zeros, at 4 bytes per
// 128 KiB.
func TestZstdZeroFrame(t *testing.T) {
	for _, n := range []int{1, 128 << 10, 128<<10 + 1, 4 << 20} {
		f := zstdZeroFrame(n)
		if want := 10 + 4*((n+128<<10-1)/(128<<10)); len(f) != want {
			t.Errorf("%d zeros: frame of %d bytes, want %d", n, len(f), want)
		}
		for _, dec := range []func(*testing.T, string, []byte) []byte{goDecode, toolDecode} {
			if got := dec(t, Zstd, f); len(got) != n || !bytes.Equal(got, make([]byte, n)) {
				t.Fatalf("%d zeros decode to %d bytes", n, len(got))
			}
		}
	}
	out := compress(t, Options{Codec: Zstd, ChunkSize: 1 << 20}, []piece{{zeros: 64 << 20}})
	if len(out) > 64*(10+4*8) {
		t.Errorf("64 MiB of zeros took %d bytes", len(out))
	}
}
