import type { ParleyClient } from '../client.js'
import { useAvatarUrl } from '../avatars.js'
import { initials } from '../format.js'
import { Icon } from './Icon.js'

/**
 * A round picture: the person's profile photo when there is one (`src`), else their
 * initials (a group: its icon). The photo has an accessible name; initials are decoration
 * (the name is always written next to them).
 */
export function Avatar ({ name, group = false, online, src, large = false, alt }: {
  name: string
  group?: boolean
  online?: boolean
  src?: string | undefined
  large?: boolean
  /** The photo's accessible name (default "Profile photo of <name>"). */
  alt?: string
}): React.JSX.Element {
  const classes = ['avatar', group ? 'group' : '', src !== undefined ? 'photo' : '', large ? 'large' : ''].filter((c) => c !== '').join(' ')
  return (
    <span className={classes} aria-hidden={src === undefined ? 'true' : undefined}>
      {src !== undefined ? <img src={src} alt={alt ?? `Profile photo of ${name}`} /> : group ? <Icon name="group" /> : initials(name)}
      {online === true && <span className="presence-dot" aria-hidden="true" />}
    </span>
  )
}

/** A person's Avatar, with their photo fetched (and cached) by its hash. */
export function PersonAvatar ({ client, peerId, hash, name, online }: { client: ParleyClient, peerId: string, hash: string | undefined, name: string, online?: boolean }): React.JSX.Element {
  const src = useAvatarUrl(client, peerId, hash)
  return <Avatar name={name} src={src} {...(online !== undefined ? { online } : {})} />
}
