package partition

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const mib = 1 << 20

// makeGPT builds a 64 MiB disk with sgdisk: gaps in the numbering, names
// with spaces and unicode, and several types.
func makeGPT(t testing.TB) string {
	t.Helper()
	needTool(t, "sgdisk")
	p := blankImage(t, 64*mib)
	run(t, "", "sgdisk",
		"-n", "1:2048:+10M", "-t", "1:ef00", "-c", "1:EFI system",
		"-n", "2:0:+20M", "-t", "2:8300", "-c", "2:root fs ü",
		"-n", "4:0:+5M", "-t", "4:8200", "-c", "4:swap",
		"-n", "5:0:0", "-t", "5:8e00",
		"-A", "2:set:2", p)
	return p
}

// sgdiskParts is what sgdisk says about a disk, in our terms.
func sgdiskParts(t testing.TB, p string) []Partition {
	t.Helper()
	out := run(t, "", "sgdisk", "-p", p)
	row := regexp.MustCompile(`^\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+[0-9A-F]{4}\s\s(.*)$`)
	var parts []Partition
	for _, line := range strings.Split(out, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		num, _ := strconv.Atoi(m[1])
		first, _ := strconv.ParseInt(m[2], 10, 64)
		last, _ := strconv.ParseInt(m[3], 10, 64)
		info := run(t, "", "sgdisk", "-i", m[1], p)
		field := func(re string) string {
			mm := regexp.MustCompile(re).FindStringSubmatch(info)
			if mm == nil {
				t.Fatalf("sgdisk -i %d: no %q in\n%s", num, re, info)
			}
			return mm[1]
		}
		typ := field(`Partition GUID code: (\S+)`)
		attrs, _ := strconv.ParseUint(field(`Attribute flags: ([0-9A-Fa-f]+)`), 16, 64)
		parts = append(parts, Partition{
			Number:   num,
			Start:    first * 512,
			Size:     (last - first + 1) * 512,
			TypeID:   typ,
			Type:     gptTypeName(typ),
			Name:     field(`Partition name: '(.*)'`),
			GUID:     field(`Partition unique GUID: (\S+)`),
			Bootable: attrs&4 != 0,
		})
	}
	if len(parts) == 0 {
		t.Fatalf("no partitions in sgdisk output:\n%s", out)
	}
	return parts
}

func samePartitions(t testing.TB, got, want []Partition) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d partitions, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("partition %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestGPTMatchesSgdisk(t *testing.T) {
	p := makeGPT(t)
	want := sgdiskParts(t, p)
	tab, err := readImage(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Kind != KindGPT || tab.SectorSize != 512 || tab.Backup {
		t.Fatalf("table %+v", tab)
	}
	samePartitions(t, tab.Partitions, want)
	names := map[int]string{1: "EFI System", 2: "Linux filesystem", 4: "Linux swap", 5: "Linux LVM"}
	for _, part := range tab.Partitions {
		if part.Type != names[part.Number] {
			t.Errorf("partition %d: type %q, want %q", part.Number, part.Type, names[part.Number])
		}
	}
}

func TestGPTBackupRepairsPrimary(t *testing.T) {
	for _, tc := range []struct {
		name string
		off  int64
	}{
		{"header", 512 + 24},    // a header field: header CRC fails
		{"entries", 2*512 + 40}, // an entry's last LBA: entries CRC fails
		{"signature", 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := makeGPT(t)
			want := sgdiskParts(t, p)
			patch(t, p, tc.off, []byte("garbage!"))
			tab, err := readImage(t, p)
			if err != nil {
				t.Fatal(err)
			}
			if tab.Kind != KindGPT || !tab.Backup {
				t.Fatalf("table %+v: want a GPT read from its backup", tab)
			}
			samePartitions(t, tab.Partitions, want)
		})
	}
}

func TestGPTBothHeadersDamaged(t *testing.T) {
	p := makeGPT(t)
	patch(t, p, 512+24, []byte("garbage!"))
	patch(t, p, 64*mib-512+24, []byte("garbage!"))
	if _, err := readImage(t, p); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func TestGPTPartitionOutsideUsable(t *testing.T) {
	// A forged table with consistent CRCs but an entry past the usable
	// area is damaged all the same.
	img := buildGPT(512, 1<<16, []gptPart{{typ: linuxFS, first: 2048, last: 1 << 17}})
	if _, err := Read(bytes.NewReader(img), int64(len(img))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func TestGPT4096Sectors(t *testing.T) {
	img := buildGPT(4096, 4096, []gptPart{
		{typ: efiSystem, first: 256, last: 511, name: "ESP"},
		{typ: linuxFS, first: 512, last: 4000, name: "root"},
	})
	tab, err := Read(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Kind != KindGPT || tab.SectorSize != 4096 || len(tab.Partitions) != 2 {
		t.Fatalf("table %+v", tab)
	}
	p := tab.Partitions[1]
	if p.Number != 2 || p.Start != 512*4096 || p.Size != 3489*4096 || p.Name != "root" || p.Type != "Linux filesystem" {
		t.Fatalf("partition %+v", p)
	}
	// Damage the primary: the backup at the last 4096-byte LBA serves.
	img[4096+30] ^= 0xFF
	tab, err = Read(bytes.NewReader(img), int64(len(img)))
	if err != nil || !tab.Backup || len(tab.Partitions) != 2 {
		t.Fatalf("after damage: %+v, %v", tab, err)
	}
}

func TestGPTGrownDisk(t *testing.T) {
	// A disk image grown after partitioning keeps its backup header in
	// the middle; the primary alone must suffice.
	p := makeGPT(t)
	want := sgdiskParts(t, p)
	if err := os.Truncate(p, 128*mib); err != nil {
		t.Fatal(err)
	}
	tab, err := readImage(t, p)
	if err != nil || tab.Backup {
		t.Fatalf("%+v, %v", tab, err)
	}
	samePartitions(t, tab.Partitions, want)
}

// A protective MBR whose GPT is gone: the MBR's other entries, as sgdisk
// shows them ("Found invalid GPT and valid MBR"), or no partitions at
// all, as Linux then sees the disk; either way with an error.
func TestProtectiveMBRWithoutGPT(t *testing.T) {
	needTool(t, "sfdisk", "sgdisk")
	for name, c := range map[string]struct {
		layout string
		kind   string
		parts  string // number:start sector, as sgdisk -p lists them
	}{
		"protective only": {"label: dos\nstart=1, size=131071, type=ee\n", KindNone, ""},
		"hybrid, GPT gone": {"label: dos\nstart=1, size=2047, type=ee\nstart=2048, size=32768, type=83\n",
			KindMBR, "2:2048"},
	} {
		t.Run(name, func(t *testing.T) {
			p := blankImage(t, 64*mib)
			run(t, c.layout, "sfdisk", "-q", p)
			tab, err := readImage(t, p)
			if !errors.Is(err, ErrCorrupt) || tab == nil || tab.Kind != c.kind {
				t.Fatalf("%+v, %v", tab, err)
			}
			got := ""
			for _, q := range tab.Partitions {
				got += fmt.Sprintf("%d:%d ", q.Number, q.Start/512)
			}
			if got = strings.TrimSpace(got); got != c.parts {
				t.Errorf("partitions %q, want %q", got, c.parts)
			}
			// sgdisk agrees.
			out := run(t, "", "sgdisk", "-p", p)
			var sg []string
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) > 3 && f[0] != "Number" && strings.Trim(f[0], "0123456789") == "" {
					sg = append(sg, f[0]+":"+f[1])
				}
			}
			if s := strings.Join(sg, " "); s != c.parts {
				t.Errorf("sgdisk -p lists %q, we %q", s, c.parts)
			}
			t.Log(err)
		})
	}
	// A GPT disk whose two headers are damaged reads as having no
	// partitions (its MBR is protective only).
	p := makeGPT(t)
	patch(t, p, 512+24, []byte("garbage!"))
	patch(t, p, 64*mib-512+24, []byte("garbage!"))
	if tab, err := readImage(t, p); !errors.Is(err, ErrCorrupt) || tab == nil || tab.Kind != KindNone ||
		len(tab.Partitions) != 0 {
		t.Errorf("GPT with both headers damaged: %+v, %v", tab, err)
	}
}

// A hybrid MBR (sgdisk -h): the GPT is used, its numbering and extents,
// and the MBR's copies of its entries are ignored, as Linux does.
func TestHybridMBR(t *testing.T) {
	needTool(t, "sgdisk")
	for _, hybrid := range []string{"3:1", "3:1:EE"} { // 0xEE first, then last
		p := blankImage(t, 64*mib)
		run(t, "", "sgdisk", "-n1:1M:+8M", "-t1:0700", "-n2:0:+8M", "-n3:0:+8M", "-t3:8200", p)
		run(t, "", "sgdisk", "-h", hybrid, p)
		s0 := readSector(t, p, 0)
		var types []byte
		for i := 0; i < 4; i++ {
			if k := s0[446+16*i+4]; k != 0 {
				types = append(types, k)
			}
		}
		if len(types) != 3 || !bytes.Contains(types, []byte{0xEE}) {
			t.Fatalf("sgdisk -h %s: not a hybrid MBR: types %x", hybrid, types)
		}
		checkHybrid(t, p)
	}
}

func checkHybrid(t *testing.T, p string) {
	t.Helper()
	tab, err := readImage(t, p)
	if err != nil || tab.Kind != KindGPT || len(tab.Partitions) != 3 {
		t.Fatalf("%+v, %v", tab, err)
	}
	for i, q := range tab.Partitions {
		if q.Number != i+1 || q.Start != int64(1+8*i)*mib {
			t.Errorf("partition %d: number %d at %d", i, q.Number, q.Start)
		}
	}
}
