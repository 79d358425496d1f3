// PagedRows holds a keyset-paged list for a virtualized view: it keeps
// every page's token and length (small) but the rows of at most maxPages
// pages, dropping those farthest from the viewport and fetching them
// again from their token when the user scrolls back.
export class PagedRows<T> {
  private tokens: string[] = [''] // tokens[i] fetches page i
  private lengths: number[] = [] // rows in page i, once fetched
  private offsets: number[] = [0] // offsets[i]: the first row of page i
  private pages = new Map<number, T[]>()
  private inflight = new Set<number>()
  done = false // the last page fetched had no next token
  error: unknown = null

  constructor(
    private fetchPage: (token: string, signal: AbortSignal) => Promise<{ rows: T[]; next: string }>,
    private onChange: () => void,
    private signal: AbortSignal,
    private maxPages = 20,
  ) {}

  // The rows known so far (plus one placeholder while more may follow).
  get count(): number {
    return this.offsets[this.lengths.length] + (this.done ? 0 : 1)
  }
  get known(): number {
    return this.offsets[this.lengths.length]
  }
  get pagesInMemory(): number {
    return this.pages.size
  }
  get loaded(): boolean {
    return this.lengths.length > 0 || this.done
  }

  // The row at index i, or undefined while its page is not in memory.
  row(i: number): T | undefined {
    const p = this.pageOf(i)
    const rows = p < 0 ? undefined : this.pages.get(p)
    return rows?.[i - this.offsets[p]]
  }

  private pageOf(i: number): number {
    let lo = 0
    let hi = this.lengths.length - 1
    if (hi < 0 || i >= this.offsets[hi + 1]) return -1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (this.offsets[mid] <= i) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  // show tells which rows are on screen: it fetches the pages they need
  // (and the next page near the end) and drops pages far away.
  show(first: number, last: number) {
    const known = this.lengths.length
    if (known === 0) {
      this.load(0)
      return
    }
    const pFirst = Math.max(0, this.pageOf(Math.min(first, this.known - 1)))
    let pLast = this.pageOf(Math.min(last, this.known - 1))
    if (pLast < 0) pLast = known - 1
    for (let p = pFirst; p <= pLast; p++) if (!this.pages.has(p)) this.load(p)
    const nearEnd = last >= this.known - 50
    if (nearEnd && !this.done && this.tokens.length > known) this.load(known)
    this.evict((pFirst + pLast) / 2)
  }

  private evict(center: number) {
    if (this.pages.size <= this.maxPages) return
    const far = [...this.pages.keys()].sort((a, b) => Math.abs(b - center) - Math.abs(a - center))
    for (const p of far.slice(0, this.pages.size - this.maxPages)) this.pages.delete(p)
  }

  private load(p: number) {
    if (this.inflight.has(p) || this.signal.aborted || p >= this.tokens.length) return
    this.inflight.add(p)
    this.fetchPage(this.tokens[p], this.signal).then(
      ({ rows, next }) => {
        this.inflight.delete(p)
        this.error = null
        this.pages.set(p, rows)
        if (p === this.lengths.length) {
          this.lengths.push(rows.length)
          this.offsets.push(this.offsets[p] + rows.length)
          if (next) this.tokens.push(next)
          else this.done = true
        } else if (this.lengths[p] !== rows.length) {
          // The list changed since the page was first read: keep the
          // rows it has now and shift the later pages.
          this.lengths[p] = rows.length
          for (let i = p; i < this.lengths.length; i++) this.offsets[i + 1] = this.offsets[i] + this.lengths[i]
        }
        this.onChange()
      },
      (e) => {
        this.inflight.delete(p)
        if (this.signal.aborted) return
        this.error = e
        this.onChange()
      },
    )
  }

  retry() {
    this.error = null
    this.onChange()
  }
}
