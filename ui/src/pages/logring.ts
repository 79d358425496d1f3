// LogRing keeps the last `cap` lines of a log as it streams in: bytes are
// decoded per stream (a character may be split across chunks), split into
// lines, and the oldest lines are dropped past the cap.
export const MAX_LINE = 64 * 1024 // longer lines are cut into pieces

export class LogRing {
  private text: string[]
  private err: Uint8Array
  private start = 0
  size = 0
  dropped = 0 // lines dropped from the front, ever
  private pending = ['', ''] // the unfinished last line of stdout, stderr
  private decoders = [new TextDecoder(), new TextDecoder()]

  constructor(public cap = 50000) {
    this.text = new Array(cap)
    this.err = new Uint8Array(cap)
  }

  // count: whole lines plus the unfinished ones, as shown.
  get count(): number {
    return this.size + (this.pending[0] ? 1 : 0) + (this.pending[1] ? 1 : 0)
  }

  // line(i) for 0 <= i < count; i + dropped is its number in the log.
  line(i: number): { text: string; stderr: boolean } {
    if (i < this.size) {
      const j = (this.start + i) % this.cap
      return { text: this.text[j], stderr: this.err[j] === 1 }
    }
    const s = i - this.size === 0 && this.pending[0] ? 0 : 1
    return { text: this.pending[s], stderr: s === 1 }
  }

  append(stderr: boolean, bytes: Uint8Array) {
    const s = stderr ? 1 : 0
    let text = this.pending[s] + this.decoders[s].decode(bytes, { stream: true })
    let from = 0
    for (;;) {
      const nl = text.indexOf('\n', from)
      if (nl < 0) break
      this.push(text.slice(from, nl > from && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl), s)
      from = nl + 1
    }
    text = from ? text.slice(from) : text
    while (text.length > MAX_LINE) {
      this.push(text.slice(0, MAX_LINE), s)
      text = text.slice(MAX_LINE)
    }
    this.pending[s] = text
  }

  private push(line: string, s: number) {
    let j: number
    if (this.size < this.cap) {
      j = (this.start + this.size) % this.cap
      this.size++
    } else {
      j = this.start
      this.start = (this.start + 1) % this.cap
      this.dropped++
    }
    this.text[j] = line
    this.err[j] = s
  }
}

export function fromBase64(s: string): Uint8Array {
  const U8 = Uint8Array as any
  if (typeof U8.fromBase64 === 'function') return U8.fromBase64(s)
  const bin = atob(s)
  const out = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i)
  return out
}
