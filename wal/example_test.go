package wal_test

import (
	"fmt"

	"github.com/cellar-backup/cellar/wal"
)

func ExampleParseName() {
	n, err := wal.ParseName("0000000100000016000000b3.00d3a0b8.backup")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n.Kind, n.String(), n.SegmentName(), n.HashDir())
	_, err = wal.ParseName("../000000010000000000000001")
	fmt.Println(err)
	// Output:
	// backup 0000000100000016000000B3.00D3A0B8.backup 0000000100000016000000B3 0000000100000016
	// wal: invalid WAL file name "../000000010000000000000001": wrong length for a WAL file name
}

func ExampleNameForLSN() {
	lsn, _ := wal.ParseLSN("16/B374D848")
	n := wal.NameForLSN(1, lsn, wal.DefaultSegmentSize)
	fmt.Println(n, lsn.SegmentOffset(wal.DefaultSegmentSize), n.Next(wal.DefaultSegmentSize))
	// Output: 0000000100000016000000B3 7657544 0000000100000016000000B4
}

func ExampleTimelineForLSN() {
	h, _ := wal.ParseHistory([]byte("1\t0/3000000\tno recovery target specified\n"))
	fmt.Println(wal.TimelineForLSN(h, 2, 0x2FFFFFF), wal.TimelineForLSN(h, 2, 0x3000000))
	// Output: 1 2
}
