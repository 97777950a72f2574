import QRCode from 'qrcode'
import { useEffect, useState } from 'react'

/** A QR code of `text` as an image (a data: URL, which the page's CSP allows). */
export function Qr ({ text, label }: { text: string, label: string }): React.JSX.Element {
  const [src, setSrc] = useState<string>()
  useEffect(() => {
    let live = true
    QRCode.toDataURL(text, { errorCorrectionLevel: 'M', margin: 2, width: 220 }).then((url) => { if (live) setSrc(url) }, () => { if (live) setSrc(undefined) })
    return () => { live = false }
  }, [text])
  return src === undefined ? <div className="qr placeholder" role="img" aria-label={label} /> : <img className="qr" src={src} alt={label} width={220} height={220} />
}
