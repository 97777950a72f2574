import { initials } from '../format.js'
import { Icon } from './Icon.js'

/** A round placeholder with initials; room for a picture once the API carries avatars. */
export function Avatar ({ name, group = false, online }: { name: string, group?: boolean, online?: boolean }): React.JSX.Element {
  return (
    <span className={group ? 'avatar group' : 'avatar'} aria-hidden="true">
      {group ? <Icon name="group" /> : initials(name)}
      {online === true && <span className="presence-dot" />}
    </span>
  )
}
