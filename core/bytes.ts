/**
 * The bytes as a `Uint8Array<ArrayBuffer>`, which libsignal and protons require: a view of an
 * ordinary ArrayBuffer is returned as is (no copy); anything else (a SharedArrayBuffer view)
 * is copied.
 *
 * @example
 * PublicKey.deserialize(owned(frame.subarray(4, 37)))
 */
export function owned (bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? bytes as Uint8Array<ArrayBuffer> : new Uint8Array(bytes)
}
