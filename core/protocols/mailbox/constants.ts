/** Store-and-forward mailbox on relays (see pb/mailbox.proto). */
export const MAILBOX_PROTOCOL = '/parley/mailbox/1.0.0'

/** Largest envelope a relay stores: a sealed DM frame with a full 64 KiB text fits (69 KiB). */
export const MAX_MAILBOX_ENVELOPE_BYTES = 70 * 1024
/** Deposits in one request. */
export const MAX_DEPOSITS_PER_REQUEST = 32
/** Items one FETCH may return, and ids one ACK may name. */
export const MAX_FETCH_ITEMS = 1024
export const MAX_ACK_IDS = 1024
/** Largest request and response frames. */
export const MAX_MAILBOX_REQUEST_BYTES = 2 * 1024 * 1024 + 64 * 1024
export const MAX_MAILBOX_RESPONSE_BYTES = 2 * 1024 * 1024 + 64 * 1024
/** How long a request or response may take before the stream is abandoned. */
export const MAILBOX_TIMEOUT_MS = 10_000
/** Relay -> recipient: mail is waiting (one MailboxNotice frame). */
export const MAILBOX_NOTIFY_PROTOCOL = '/parley/mailbox-notify/1.0.0'
/** A relay notifies one recipient at most this often. */
export const NOTIFY_INTERVAL_MS = 1000
