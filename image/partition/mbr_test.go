package partition

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// makeMBR builds a 64 MiB disk with sfdisk: two primaries, an extended
// partition and three logical partitions.
func makeMBR(t testing.TB) string {
	t.Helper()
	needTool(t, "sfdisk")
	p := blankImage(t, 64*mib)
	run(t, "label: dos\n,10M,83,*\n,10M,82\n,,5\n,5M,83\n,5M,8e\n,5M,83\n", "sfdisk", "-q", p)
	return p
}

func sfdiskParts(t testing.TB, p string) []Partition {
	t.Helper()
	var out struct {
		PartitionTable struct {
			Label      string
			SectorSize int
			Partitions []struct {
				Node        string
				Start, Size int64
				Type        string
				Bootable    bool
			}
		}
	}
	if err := json.Unmarshal([]byte(run(t, "", "sfdisk", "--json", p)), &out); err != nil {
		t.Fatal(err)
	}
	var parts []Partition
	for _, sp := range out.PartitionTable.Partitions {
		num, err := strconv.Atoi(strings.TrimPrefix(sp.Node, p))
		if err != nil {
			t.Fatalf("node %q: %v", sp.Node, err)
		}
		kind, err := strconv.ParseUint(sp.Type, 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("0x%02x", kind)
		parts = append(parts, Partition{
			Number: num, Start: sp.Start * 512, Size: sp.Size * 512,
			Type: mbrTypeName(byte(kind), id), TypeID: id,
			Bootable: sp.Bootable, Container: isExtended(byte(kind)),
		})
	}
	return parts
}

func TestMBRMatchesSfdisk(t *testing.T) {
	p := makeMBR(t)
	want := sfdiskParts(t, p)
	tab, err := readImage(t, p)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Kind != KindMBR || tab.SectorSize != 512 {
		t.Fatalf("table %+v", tab)
	}
	samePartitions(t, tab.Partitions, want)
	if len(tab.Partitions) != 6 || tab.Partitions[5].Number != 7 {
		t.Fatalf("want primaries 1-3 and logicals 5-7, got %+v", tab.Partitions)
	}
	if !tab.Partitions[2].Container || tab.Partitions[2].Type != "extended" {
		t.Fatalf("extended partition %+v", tab.Partitions[2])
	}
}

// ebrSectors returns the sectors of the three EBRs of makeMBR's disk,
// following the chain.
func ebrSectors(t testing.TB, p string) []int64 {
	t.Helper()
	tab, err := readImage(t, p)
	if err != nil {
		t.Fatal(err)
	}
	ext := tab.Partitions[2]
	var out []int64
	ebr := ext.Start / 512
	for range 3 {
		out = append(out, ebr)
		buf := readSector(t, p, ebr)
		link := mbrEntries(buf)[1]
		ebr = ext.Start/512 + int64(link.start)
	}
	return out
}

func readSector(t testing.TB, p string, lba int64) []byte {
	t.Helper()
	f := openFile(t, p)
	defer f.Close()
	buf := make([]byte, 512)
	if _, err := f.ReadAt(buf, lba*512); err != nil {
		t.Fatal(err)
	}
	return buf
}

func TestMBRDamage(t *testing.T) {
	le32 := func(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, p string)
		partial int // partitions still returned with the error
	}{
		{"status byte", func(t *testing.T, p string) { patch(t, p, 446+16, []byte{0x33}) }, 0},
		{"primary past disk end", func(t *testing.T, p string) { patch(t, p, 446+12, le32(1<<30)) }, 0},
		{"EBR loop", func(t *testing.T, p string) {
			e := ebrSectors(t, p)
			// The last EBR links back to the first.
			patch(t, p, e[2]*512+446+16, []byte{0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0})
		}, 6},
		{"EBR loop to second", func(t *testing.T, p string) {
			e := ebrSectors(t, p)
			patch(t, p, e[2]*512+446+16+4, []byte{5})
			patch(t, p, e[2]*512+446+16+8, le32(uint32(e[1]-e[0])))
			patch(t, p, e[2]*512+446+16+12, le32(1))
		}, 6},
		{"EBR link out of range", func(t *testing.T, p string) {
			e := ebrSectors(t, p)
			patch(t, p, e[1]*512+446+16+4, []byte{5})
			patch(t, p, e[1]*512+446+16+8, le32(1<<31))
		}, 5},
		{"EBR signature", func(t *testing.T, p string) {
			e := ebrSectors(t, p)
			patch(t, p, e[1]*512+510, []byte{0, 0})
		}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := makeMBR(t)
			tc.damage(t, p)
			tab, err := readImage(t, p)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if got := 0; tab != nil {
				got = len(tab.Partitions)
				if got != tc.partial {
					t.Fatalf("got %d partitions with the error, want %d", got, tc.partial)
				}
			} else if tc.partial != 0 {
				t.Fatalf("no table with the error, want %d partitions", tc.partial)
			}
		})
	}
}

func TestNoTable(t *testing.T) {
	t.Run("blank", func(t *testing.T) {
		tab, err := readImage(t, blankImage(t, mib))
		if err != nil || tab.Kind != KindNone {
			t.Fatalf("%+v, %v", tab, err)
		}
	})
	t.Run("tiny", func(t *testing.T) {
		tab, err := readImage(t, blankImage(t, 100))
		if err != nil || tab.Kind != KindNone {
			t.Fatalf("%+v, %v", tab, err)
		}
	})
	for _, fat := range []string{"12", "16", "32"} {
		t.Run("bare FAT"+fat, func(t *testing.T) {
			needTool(t, "mkfs.vfat")
			p := blankImage(t, 40*mib)
			run(t, "", "mkfs.vfat", "-F", fat, p)
			tab, err := readImage(t, p)
			if err != nil || tab.Kind != KindNone {
				t.Fatalf("%+v, %v", tab, err)
			}
		})
	}
	t.Run("FAT boot code with 0xEE", func(t *testing.T) {
		needTool(t, "mkfs.vfat")
		p := blankImage(t, 4*mib)
		run(t, "", "mkfs.vfat", "-F", "12", p)
		patch(t, p, 446+4, []byte{0xEE})
		tab, err := readImage(t, p)
		if err != nil || tab.Kind != KindNone {
			t.Fatalf("%+v, %v", tab, err)
		}
	})
	t.Run("bare ext4", func(t *testing.T) {
		needTool(t, "mkfs.ext4")
		p := blankImage(t, 8*mib)
		run(t, "", "mkfs.ext4", "-q", p)
		tab, err := readImage(t, p)
		if err != nil || tab.Kind != KindNone {
			t.Fatalf("%+v, %v", tab, err)
		}
	})
}
