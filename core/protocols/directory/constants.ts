/** Peer lookup on relays (see pb/directory.proto). */
export const DIRECTORY_PROTOCOL = '/parley/directory/1.0.0'
export const MAX_DIRECTORY_REQUEST_BYTES = 256
export const MAX_DIRECTORY_RESPONSE_BYTES = 16 * 1024
export const DIRECTORY_TIMEOUT_MS = 5_000
/**
 * Lookups one client runs at once per relay (the relay's service takes 8 streams per
 * connection and resets the rest); more wait their turn.
 */
export const DIRECTORY_PARALLEL = 4
