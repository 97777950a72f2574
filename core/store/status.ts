/**
 * Message statuses, in a module of their own with no imports, so the API contract's types
 * (and the renderer, which may import only those) do not pull in node-only modules.
 */
export type OutgoingStatus = 'pending' | 'sent' | 'delivered' | 'failed'
/** Statuses that take a message out of the outbox. */
export type SettledStatus = 'sent' | 'delivered' | 'failed'
export type MessageStatus = OutgoingStatus | 'received'
