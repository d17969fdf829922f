package nbd

import "strconv"

// Protocol constants, named as in the NBD protocol document (doc/proto.md
// of the NBD project) without the NBD_ prefix.

// Magic numbers.
const (
	magicInit          = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt           = 0x49484156454F5054 // "IHAVEOPT"
	magicOptReply      = 0x3e889045565a9
	magicRequest       = 0x25609513
	magicSimpleReply   = 0x67446698
	magicStructReply   = 0x668e33ef
	handshakeFixed     = 1 << 0 // NBD_FLAG_FIXED_NEWSTYLE
	handshakeNoZeroes  = 1 << 1 // NBD_FLAG_NO_ZEROES
	clientFixed        = 1 << 0 // NBD_FLAG_C_FIXED_NEWSTYLE
	clientNoZeroes     = 1 << 1 // NBD_FLAG_C_NO_ZEROES
	exportNameZeroes   = 124    // reserved bytes after NBD_OPT_EXPORT_NAME's reply
	requestHeaderLen   = 28
	simpleReplyLen     = 16
	structReplyHdrLen  = 20
	optionHeaderLen    = 16
	optionReplyHdrLen  = 20
	defaultPort        = "10809"
	maxStringLen       = 4096 // longest string (name, message) the protocol allows
	maxDescriptorChunk = 1 << 20
)

// Option types.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
)

// Option reply types; errors have bit 31 set.
const (
	repAck            = 1
	repServer         = 2
	repInfo           = 3
	repMetaContext    = 4
	repFlagError      = 1 << 31
	repErrUnsup       = repFlagError | 1
	repErrPolicy      = repFlagError | 2
	repErrInvalid     = repFlagError | 3
	repErrPlatform    = repFlagError | 4
	repErrTLSReqd     = repFlagError | 5
	repErrUnknown     = repFlagError | 6
	repErrShutdown    = repFlagError | 7
	repErrBlockSizeRq = repFlagError | 8
	repErrTooBig      = repFlagError | 9
)

// Information types of NBD_OPT_INFO and NBD_OPT_GO.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Transmission flags.
const (
	FlagHasFlags     = 1 << 0
	FlagReadOnly     = 1 << 1
	FlagSendFlush    = 1 << 2
	FlagSendFUA      = 1 << 3
	FlagRotational   = 1 << 4
	FlagSendTrim     = 1 << 5
	FlagWriteZeroes  = 1 << 6
	FlagSendDF       = 1 << 7
	FlagCanMultiConn = 1 << 8
	FlagSendCache    = 1 << 10
	FlagFastZero     = 1 << 11
)

// Commands.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
	cmdBlockStatus = 7
)

// Command flags.
const (
	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1
	cmdFlagDF     = 1 << 2
	cmdFlagReqOne = 1 << 3
)

// Structured reply flags and types; error types have bit 15 set.
const (
	replyFlagDone         = 1 << 0
	replyTypeNone         = 0
	replyTypeOffsetData   = 1
	replyTypeOffsetHole   = 2
	replyTypeBlockStatus  = 5
	replyTypeFlagError    = 1 << 15
	replyTypeError        = replyTypeFlagError | 1
	replyTypeErrorOffset  = replyTypeFlagError | 2
	errorChunkFixedLen    = 6  // error + message length
	errorOffsetChunkExtra = 8  // offset after the message
	holeChunkLen          = 12 // offset + hole size
)

// Errno is an error value of the transmission phase.
type Errno uint32

// The error values the protocol defines.
const (
	EPERM     Errno = 1
	EIO       Errno = 5
	ENOMEM    Errno = 12
	EINVAL    Errno = 22
	ENOSPC    Errno = 28
	EOVERFLOW Errno = 75
	ENOTSUP   Errno = 95
	ESHUTDOWN Errno = 108
)

func (e Errno) String() string {
	switch e {
	case EPERM:
		return "operation not permitted"
	case EIO:
		return "input/output error"
	case ENOMEM:
		return "cannot allocate memory"
	case EINVAL:
		return "invalid argument"
	case ENOSPC:
		return "no space left on device"
	case EOVERFLOW:
		return "value too large"
	case ENOTSUP:
		return "operation not supported"
	case ESHUTDOWN:
		return "server is shutting down"
	}
	return "error " + strconv.FormatUint(uint64(e), 10)
}

// Extent flags. base:allocation defines HOLE and ZERO;
// qemu:dirty-bitmap:NAME defines DIRTY (the same bit as HOLE).
const (
	StateHole  = 1 << 0
	StateZero  = 1 << 1
	StateDirty = 1 << 0
)

// Metadata context names.
const (
	ContextAllocation        = "base:allocation"
	ContextDirtyBitmapPrefix = "qemu:dirty-bitmap:"
)

// Size constraints cairn's server advertises, and the limits both ends
// hold to.
const (
	// MaxPayload is the largest read the server accepts and the longest
	// data chunk either end sends or accepts: 32 MiB, the protocol's
	// default and the most any client may assume.
	MaxPayload = 32 << 20
	// maxBlockLen is the largest length a request can carry (32 bits).
	maxBlockLen = 1<<32 - 1
)

func optName(o uint32) string {
	switch o {
	case optExportName:
		return "EXPORT_NAME"
	case optAbort:
		return "ABORT"
	case optList:
		return "LIST"
	case optStartTLS:
		return "STARTTLS"
	case optInfo:
		return "INFO"
	case optGo:
		return "GO"
	case optStructuredReply:
		return "STRUCTURED_REPLY"
	case optListMetaContext:
		return "LIST_META_CONTEXT"
	case optSetMetaContext:
		return "SET_META_CONTEXT"
	}
	return "option " + strconv.FormatUint(uint64(o), 10)
}

func repName(r uint32) string {
	switch r {
	case repAck:
		return "ACK"
	case repServer:
		return "SERVER"
	case repInfo:
		return "INFO"
	case repMetaContext:
		return "META_CONTEXT"
	case repErrUnsup:
		return "ERR_UNSUP"
	case repErrPolicy:
		return "ERR_POLICY"
	case repErrInvalid:
		return "ERR_INVALID"
	case repErrPlatform:
		return "ERR_PLATFORM"
	case repErrTLSReqd:
		return "ERR_TLS_REQD"
	case repErrUnknown:
		return "ERR_UNKNOWN"
	case repErrShutdown:
		return "ERR_SHUTDOWN"
	case repErrBlockSizeRq:
		return "ERR_BLOCK_SIZE_REQD"
	case repErrTooBig:
		return "ERR_TOO_BIG"
	}
	return "reply " + strconv.FormatUint(uint64(r), 10)
}
