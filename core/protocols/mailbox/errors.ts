import { ParleyError } from '../../errors.js'

/** The relay answered a mailbox request with an error; `remoteName` is its error name. */
export class MailboxError extends ParleyError {
  static override name = 'MailboxError'
  override name = 'MailboxError'
  constructor (readonly remoteName: string, message: string) {
    super(`${remoteName}: ${message}`)
  }
}

/** An envelope is over the mailbox's size limit. */
export class EnvelopeTooLargeError extends ParleyError {
  static override name = 'EnvelopeTooLargeError'
  override name = 'EnvelopeTooLargeError'
}

/** The recipient's mailbox is at its count or byte quota. */
export class MailboxFullError extends ParleyError {
  static override name = 'MailboxFullError'
  override name = 'MailboxFullError'
}

/** The depositor sent more than its rate allows. */
export class RateLimitedError extends ParleyError {
  static override name = 'RateLimitedError'
  override name = 'RateLimitedError'
}
