/** Catch-up of one group between two members (see pb/group-sync.proto and GROUPS-DESIGN.md). */
export const GROUP_SYNC_PROTOCOL = '/parley/group-sync/1.0.0'

/** Largest frame either side accepts (the decoder's bound on any length prefix). */
export const MAX_SYNC_FRAME_BYTES = 1024 * 1024
/** Most record bytes one STEP2 frame carries (the sender fills chunks up to this). */
export const MAX_CHUNK_BYTES = 256 * 1024
/** Largest record (the doc refuses records over 96 KiB; a little room for the signature and envelope). */
export const MAX_RECORD_BYTES = 100 * 1024
/** Most records in one STEP2 frame (a record is far over 64 bytes: it holds a 64-byte signature). */
export const MAX_CHUNK_RECORDS = 4096
/** Largest state vector (a yjs state vector is ~10 bytes per writer: room for ~25,000 writers). */
export const MAX_STATE_VECTOR_BYTES = 256 * 1024
/** Longest error message a refusal carries (characters), and longest error name. */
export const MAX_SYNC_ERROR_MESSAGE = 256
export const MAX_SYNC_ERROR_NAME = 64

/**
 * STEP2 frames a sender may have unacknowledged: the receiver applies one chunk while the
 * next ones travel, and never holds more than this many (it refuses a sender that overruns).
 */
export const SYNC_WINDOW = 4
/** How long either side waits for the other's next frame before giving up on the sync. */
export const SYNC_IDLE_TIMEOUT_MS = 10_000

/** Inbound syncs one peer may run with us at once; more are refused (ProtocolLimitError). */
export const MAX_SYNCS_PER_PEER = 2
/** Inbound syncs at once from everyone; more are refused (ProtocolLimitError). */
export const MAX_SYNCS = 32
/**
 * Streams of this protocol one connection may have open each way (libp2p resets beyond
 * this, without a name); above MAX_SYNCS_PER_PEER so our own named refusal comes first.
 */
export const MAX_SYNC_STREAMS = MAX_SYNCS_PER_PEER + 2
