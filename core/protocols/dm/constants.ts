/** Direct messages: the opener writes Sealed frames, the listener answers with Acks. */
export const DM_PROTOCOL = '/parley/dm/2.0.0'

/** Largest text body, in UTF-8 bytes. */
export const MAX_TEXT_BYTES = 64 * 1024
/** Largest group payload carried in an envelope (core/groups: invites, records, sender keys). */
export const MAX_GROUP_BODY_BYTES = MAX_TEXT_BYTES + 512
/** Largest profile body: a 48 KiB avatar (core/profile.ts), a 64-character name and the version. */
export const MAX_PROFILE_BODY_BYTES = 48 * 1024 + 512
/** Largest envelope (the plaintext inside a Sealed frame): text plus headers, with room to spare. */
export const MAX_ENVELOPE_BYTES = MAX_TEXT_BYTES + 1024
/**
 * Largest Sealed frame: an envelope padded to Signal's 160-byte blocks, plus a first
 * message's PQXDH header (identity and base keys, a 1568-byte ML-KEM ciphertext) and binding.
 */
export const MAX_SEALED_BYTES = MAX_ENVELOPE_BYTES + 4096
/** Largest binding signature carried by a PREKEY frame (Ed25519: 64 bytes). */
export const MAX_BINDING_BYTES = 128
/** Largest ack frame: up to MAX_ACK_IDS ULIDs. */
export const MAX_ACK_IDS = 4096
export const MAX_ACK_BYTES = MAX_ACK_IDS * 32
/** Streams per connection: one each way is normal; a few more cover reconnect races. */
export const MAX_DM_STREAMS = 4
/** Envelopes a sender may have unacknowledged on one stream. */
export const SEND_WINDOW = 512
/** Bytes a receiver holds decoded but not yet stored before it calls the sender hostile. */
export const MAX_PENDING_BYTES = 4 * 1024 * 1024
