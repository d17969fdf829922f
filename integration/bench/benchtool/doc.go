// Command benchtool holds the small helpers of cairn's benchmark scripts
// (bench/run.sh, bench/chunksize.sh, bench/nbd.sh, ...), so that the scripts need no
// interpreter beyond bash and Go:
//
//	benchtool offsets -seed S -n N -len L IMAGE   seeded, non-overlapping ranges inside data
//	benchtool diff A B                           bytes of 4 KiB blocks that differ
//	benchtool report RESULTS.tsv                 median table, ratios, PASS/MISS
//	benchtool chunks RESULTS.tsv                 chunk-size table
//	benchtool randread -vault DIR -point REF     timed random 4 KiB reads of a point
//	benchtool profile -vault DIR -name N -cpu F IMAGE   one backup under the CPU profiler
//	benchtool codecs [-chunk B] IMAGE             CPU cost and size of each codec on the data
//	benchtool preads -image IMAGE [-j J] FILE      timed 4 KiB preads of FILE (a mount) inside IMAGE's data
//	benchtool nbdwait -uri URI -since T            seconds from T to an NBD export's first byte
//	benchtool nbdreads -uri URI -image IMAGE [-j J] timed 4 KiB reads of an NBD export, p50/p99, checked
//	benchtool qmp -socket S [-retry D] JSON...     QMP commands to a QEMU or qemu-storage-daemon
//	benchtool xfsproto DIR                       a mkfs.xfs -p protofile of the tree at DIR
//
// Terms: a "data extent" is a range an lseek(SEEK_DATA/SEEK_HOLE) walk of
// the file reports as data. Every random choice comes from a PCG seeded by
// the caller, so a run is reproducible on the same input.
package main
