/** Signal prekey bundles on relays and nodes (see pb/prekeys.proto and docs/relay.md). */
export const PREKEYS_PROTOCOL = '/parley/prekeys/1.0.0'

/** A serialized libsignal EC public key (Curve25519: type byte 0x05 + 32 bytes). */
export const EC_PUBLIC_KEY_BYTES = 33
/** A serialized libsignal Kyber-1024 (ML-KEM) public key (type byte + 1568 bytes). */
export const KYBER_PUBLIC_KEY_BYTES = 1569
/** An XEdDSA signature by the Signal identity key. */
export const SIGNATURE_BYTES = 64
/** The libp2p binding signature (Ed25519 is 64 bytes; room for other key types' encodings). */
export const MAX_BINDING_BYTES = 128
/** Signal device ids are 1..127; Parley uses 1 (one device per peer id). */
export const MAX_DEVICE_ID = 127

/** One-time prekeys one PUBLISH may carry. */
export const MAX_ONE_TIME_KEYS_PER_PUBLISH = 100
/** One-time prekeys a relay keeps for one owner; more are dropped (PUBLISH's `remaining` says how many it holds). */
export const MAX_ONE_TIME_KEYS_STORED = 200

/**
 * Largest request frame. A header is at most ~1.95 KiB (identity key 35, binding 131,
 * ids 8, signed prekey 109, Kyber prekey 1,647 bytes with their tags and lengths); each
 * one-time key adds 43 bytes, so a PUBLISH with 100 of them is ~6.1 KiB.
 */
export const MAX_PREKEY_REQUEST_BYTES = 8 * 1024
/** Largest response frame: a bundle (header + one one-time key, ~2 KiB) or a refusal. */
export const MAX_PREKEY_RESPONSE_BYTES = 4 * 1024
/** Longest error message a server puts in a refusal (characters). */
export const MAX_PREKEY_ERROR_MESSAGE = 256

/** How long a request or response may take before the stream is abandoned. */
export const PREKEYS_TIMEOUT_MS = 5_000
/**
 * Requests one client runs at once per server (a server takes 8 streams per connection by
 * default and resets the rest); more wait their turn.
 */
export const PREKEYS_PARALLEL = 4
