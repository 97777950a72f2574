// The part of the qrcode package the renderer uses. @types/qrcode pulls in node's types
// (streams, files), which have no place in a DOM program; tsconfig maps 'qrcode' here.
export interface QRCodeToDataURLOptions {
  errorCorrectionLevel?: 'L' | 'M' | 'Q' | 'H'
  margin?: number
  width?: number
  color?: { dark?: string, light?: string }
}
export function toDataURL (text: string, options?: QRCodeToDataURLOptions): Promise<string>
declare const QRCode: { toDataURL: typeof toDataURL }
export default QRCode
